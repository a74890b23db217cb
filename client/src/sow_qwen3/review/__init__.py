"""``sow-qwen3 review``: a page in the browser to fix what the aligner flags.

``catalogue`` finds the songs (a manifest and its output folder, or one song) and
loads their audio, voiced segments and timings; ``evidence`` judges a song's lines
with the contract's rules (``sow_qwen3_contract.quality``, the server's thresholds)
after every change; ``saving`` writes a song's files all at once or not at all;
``server`` is the local HTTP server of the page (``static/``) and its JSON API.
"""
