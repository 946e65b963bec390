"""AURA-Mem for ROS 2: a constant-size, action-gated recurrent memory for frozen VLA policies.

The generated message modules (``aura_mem_ros.msg``) live in the installed package; in an
editable checkout this source package must also find them there, hence ``extend_path``.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
