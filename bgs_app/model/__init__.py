"""The multi-task 3D CNN: network, tensor store (more to come: training, bundles, scoring).

This package knows nothing of Nipype; interfaces wrap it.
"""
