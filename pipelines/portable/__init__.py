"""What an exported bundle needs of the project, as code that imports only the standard library, NumPy, PyTorch
and MONAI (and its own modules, relatively): never ``pipelines``, ``transforms`` or ``networks``.

``python -m pipelines export`` copies these modules (not this file) into the zip as the model-zoo ``scripts/``
package, whose own ``__init__.py`` installs the one-line error hook; the exported ``configs/inference.json`` calls
them as ``scripts.<module>.<name>``. The project calls the same code, so the exported bundle and the project
apply one set of rules:

- ``errors``: :class:`~pipelines.portable.errors.InputError`, the one exception type for bad input, and the
  ``sys.excepthook`` that shows it as one ``error:`` line (standard library only: the command line imports it);
- ``checksum``: the SHA-256 check of the model file before it is loaded;
- ``datalist``: the folder-of-slices datalist and its 2.5D neighbour stacks;
- ``channels``: :class:`~pipelines.portable.channels.SelectChannelsd`;
- ``masks``: mask PNGs read and written, and the per-subject 3D post-processing of written masks.
"""
