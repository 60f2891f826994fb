"""worldmot.datasets"""
