import sys

from aura_mem_ros.demo.runner import main

sys.exit(main())
