"""Rules the project applies everywhere, in code that imports only the standard library, NumPy, PyTorch and MONAI
(and its own modules, relatively): never ``pipelines``, ``transforms`` or ``networks``, so that the command line
(which imports :mod:`~pipelines.portable.errors` before anything heavy) and any bundle can use them alone.

- ``errors``: :class:`~pipelines.portable.errors.InputError`, the one exception type for bad input, and the
  ``sys.excepthook`` that shows it as one ``error:`` line (standard library only);
- ``checksum``: a file's SHA-256 (the export records it for each model file);
- ``datalist``: the folder-of-slices datalist and its 2.5D neighbour stacks;
- ``channels``: :class:`~pipelines.portable.channels.SelectChannelsd`;
- ``masks``: mask PNGs written, and the per-subject 3D post-processing of masks.
"""
