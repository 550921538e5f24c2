from ..ModelBase import ModelBase


class Model(ModelBase):
    OPTIONS = {"resolution": 128, "face_type": "f", "archi": "liae-ud", "ae_dims": 256, "e_dims": 64, "d_dims": 64,
               "d_mask_dims": 22, "batch_size": 4, "masked_training": True, "adabelief": True, "lr_dropout": "n"}
