"""The MoT world model."""
