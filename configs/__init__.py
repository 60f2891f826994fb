"""worldmot's YAML configs, installed as the package data ``worldmot.configs``."""
