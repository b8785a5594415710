"""The one CPU dispatch: instruction-set detection, the level table and the level in use.

``dispatch.h`` detects the CPU and holds the target attributes, ``instantiate.h`` compiles a
kernel template once per (level, dtype), and :mod:`pyconvfast._lib.cpu.levels` owns the one
process-wide level that every kernel family reads.
"""
