"""worldmot.policies"""
