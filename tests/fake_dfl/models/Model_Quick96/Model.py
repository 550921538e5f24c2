from ..ModelBase import ModelBase


class Model(ModelBase):
    OPTIONS = {}
