# tests/vm/rules.mk: placeholder until the VM test suite (owned elsewhere) provides its rules.
