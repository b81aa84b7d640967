"""The pipeline's steps, without Dagster: fetch a market's ranges into the store, detect and
plan the repair of gaps. defs/ wires them into assets, checks and sensors; the benchmarks
and the command line can call them directly."""
