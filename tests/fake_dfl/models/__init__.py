from .ModelBase import ModelBase  # noqa: F401


def import_model(model_class_name):
    module = __import__("Model_" + model_class_name, globals(), locals(), [], 1)
    return module.Model
