"""The settings plane: the config file's model, the environment it needs, the built `Settings`."""
