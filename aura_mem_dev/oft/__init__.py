"""OpenVLA-OFT development tools: the tiny random-weight checkpoint in the real file layout,
the TensorFlow reference-frame generator for the preprocessing test, and the GPU check."""
