"""The contract between the aligner service, its client and the tests. Standard library only.

* ``tensors``: the sample rate, the Triton model names and their input and output tensor names;
* ``limits``: the audio-length limit's default and the ceiling an operator may raise it to;
* ``quality``: the flag codes and the verdict rule, applied by the server and by ``sow-qwen3 check``;
* ``response``: one decoder of a ``qwen3_aligner`` response into typed lines.

config.pbtxt is the source of the tensors' types and shapes and of the
thresholds' values; the tests check that it names the tensors listed here.
"""
