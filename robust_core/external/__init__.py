"""Networks the lab did not train: the checks a network must pass before it is evaluated, and the code and weights
files it is built from.

    from robust_core.external import check_model, build_from_factory, read_weights
    from robust_core.store import ModelStore
    entry = ModelStore().add_external(model, dataset="cifar10", name="my WRN")   # checked, then stored

An external network is a store entry like a trained one (its config's arch and method are ``"external"``, its id a
hash of its code's name and its weights' content), so every page, the sweep, AutoAttack and the reports take it.
"""
from .checks import ModelCheckError, ModelCheckReport, check_model
from .loading import (ExternalModelError, build_from_factory, import_factory, load_into, read_weights,
                      weights_digest)

__all__ = ["ExternalModelError", "ModelCheckError", "ModelCheckReport", "build_from_factory", "check_model",
           "import_factory", "load_into", "read_weights", "weights_digest"]
