"""worldmot.envs"""
