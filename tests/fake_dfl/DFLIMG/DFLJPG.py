"""Stand-in writer: metadata goes to a JSON file beside the JPEG (the real one embeds a chunk)."""

import json
from pathlib import Path

import cv2


class DFLJPG:
    def __init__(self, filename):
        self.filename = filename
        self.dfl_dict = {}
        self.shape = None

    @staticmethod
    def load(filename):
        image = cv2.imread(filename)
        if image is None:
            return None
        face = DFLJPG(filename)
        face.shape = image.shape
        return face

    def get_shape(self):
        return self.shape

    def set_face_type(self, value):
        self.dfl_dict["face_type"] = value

    def set_landmarks(self, value):
        self.dfl_dict["landmarks"] = value

    def set_source_filename(self, value):
        self.dfl_dict["source_filename"] = value

    def set_source_rect(self, value):
        self.dfl_dict["source_rect"] = value

    def set_source_landmarks(self, value):
        self.dfl_dict["source_landmarks"] = value

    def set_image_to_face_mat(self, value):
        self.dfl_dict["image_to_face_mat"] = value.tolist()

    def save(self):
        Path(self.filename + ".json").write_text(json.dumps(self.dfl_dict))
