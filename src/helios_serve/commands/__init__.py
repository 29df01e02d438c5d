"""The `helios` sub-commands, one module each: their flags, and how argv and the environment
become the options a process shape (`helios_serve.compose`) is built from."""
