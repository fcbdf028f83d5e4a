"""The functions the workflow's scripts call: files in, files out, one module per rule family.

Below this layer the library works on arrays, tensors and objects and never imports a stage.
"""
