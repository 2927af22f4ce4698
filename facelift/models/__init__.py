"""FaceLift's networks: B-Net, FAN, DRN, the PatchGAN discriminator and frozen VGG-16.

Every network keeps its constructor arguments as a JSON config and saves/loads with
``save_pretrained(dir)`` / ``Class.from_pretrained(dir)`` (``config.json`` +
``model.safetensors``). ``create_model(name, **config)`` builds one by registry name.
"""

from facelift.models._base import FaceLiftModel, fold_batchnorm, load_safetensors
from facelift.models._registry import MODEL_CLASSES, create_model, list_models, load_model, register_model
from facelift.models.bnet import BNet, BNetOutput
from facelift.models.discriminator import PatchGAN
from facelift.models.unet import DRN, FAN, UV_INPUTS, UNet, stack_inputs
from facelift.models.vgg import LPIPS, PERCEPTUAL_LAYERS, VGG16Features, perceptual_loss

__all__ = [
    "BNet",
    "BNetOutput",
    "DRN",
    "FAN",
    "LPIPS",
    "MODEL_CLASSES",
    "PERCEPTUAL_LAYERS",
    "FaceLiftModel",
    "PatchGAN",
    "UNet",
    "UV_INPUTS",
    "VGG16Features",
    "create_model",
    "fold_batchnorm",
    "list_models",
    "load_model",
    "load_safetensors",
    "perceptual_loss",
    "register_model",
    "stack_inputs",
]
