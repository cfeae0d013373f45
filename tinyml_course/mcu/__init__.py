"""A virtual Cortex-M4 microcontroller: compile C for a real chip's memory map, run it in an
emulator, and measure what it costs (flash, RAM, stack, instructions, estimated cycles).

Modules: ``board`` (the chips), ``build`` (compile with zig cc), ``sizes`` (what lands in
flash and RAM), ``emulator`` (run and count), ``codegen`` (C code for a model).
"""
