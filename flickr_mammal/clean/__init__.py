"""The cleaning stage (docs/reference.md §6): a pretrained ImageNet classifier (``classifiers``)
keeps photos it judges to show their class (``stage``), on one device or one process per GPU
(``parallel``). ``config`` needs no torch, so importing it keeps ``build_dataset --help`` fast."""
