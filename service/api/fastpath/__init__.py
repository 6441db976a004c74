"""The API's transport fast paths: code that does by hand what Litestar or uvicorn would do in general.

Each module replaces a general mechanism on the inference hot path with a narrower one, because the
general one cost a measured share of a small model's requests (docs/benchmarks.md); each module's
docstring says what it replaces and what that bought. Nothing here changes what a client sees:
``uploads`` parses classify bodies, ``answers`` sends their JSON, ``protocol`` writes a response in one
send(), ``admission`` refuses the excess before any work, ``tally`` batches metric writes.
"""
