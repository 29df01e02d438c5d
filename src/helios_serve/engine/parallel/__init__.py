"""One stream over several devices: context parallelism, a decode rank, CFG over two ranks."""
