"""Nipype interfaces: small ``SimpleInterface`` classes, each wrapping one processing step.

The functions they call are plain Python (nibabel, antspyx, torch) and can be used
without Nipype.
"""
