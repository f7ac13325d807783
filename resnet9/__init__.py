"""ResNet-9 on CIFAR-10: the library behind the DVC stages in ``stages/``.

Modules, each small and with one job:

- :mod:`resnet9.params`    typed ``params.yaml`` sections and their validation
- :mod:`resnet9.paths`     every output path, declared once; the project root
- :mod:`resnet9.cifar10`   CIFAR-10's classes, split sizes, image size and statistics
- :mod:`resnet9.preprocess` images to the network's input: the shared normalization
- :mod:`resnet9.data`      dataset sources, integrity checks, the canonical dataset
- :mod:`resnet9.augment`   the albumentations pipelines
- :mod:`resnet9.batch_augment` the same augmentation as batched tensor ops
- :mod:`resnet9.loaders`   train and test loaders of both backends, with their RNG state
- :mod:`resnet9.model`     the ResNet-9 network and its torchinfo summary
- :mod:`resnet9.schedule`  the One Cycle policy
- :mod:`resnet9.lr_range`  the LR range test, its pick rule, and train's reading of it
- :mod:`resnet9.recipe`    params to torch objects: network, Adam, EMA, loss
- :mod:`resnet9.model_file` the model file: what train writes and predict, export, evaluate read
- :mod:`resnet9.engine`    the training loop (``TrainLoop``, ``build_loop``), evaluation, verdict
- :mod:`resnet9.runtime`   device choice (a free GPU per run), seeding
- :mod:`resnet9.checkpoint` resumable training state
- :mod:`resnet9.train_outputs` what a finished training run writes, in one call
- :mod:`resnet9.distributed` DistributedDataParallel under torchrun
- :mod:`resnet9.gradcam`   Grad-CAM with captum
- :mod:`resnet9.figures`   matplotlib figures
- :mod:`resnet9.atomic_io` atomic writes and reads of every output file
- :mod:`resnet9.precision` bf16 / fp16 / fp32 autocast by device (``recipe.precision``)
- :mod:`resnet9.provenance` where a model came from (git, versions, device, data, params)
- :mod:`resnet9.live`      a run's progress after every epoch (history CSV, DVCLive)
- :mod:`resnet9.export`    ONNX and TorchScript exports, checked against torch eager
- :mod:`resnet9.predict`   ``python -m resnet9.predict``: classify image files, ``--info``
- :mod:`resnet9.app`       ``python -m resnet9.app``: the Gradio demo (``make demo``)
"""

import os

# albumentations asks PyPI for a newer release when imported: a network call in every stage,
# and a warning on an offline machine. requirements.txt pins the version, so it only costs time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


class PipelineError(Exception):
    """Base class of the errors a stage reports as one line and a non-zero exit."""
