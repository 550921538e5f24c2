"""The learner-facing words of the app: one short "what is happening here" per tab, plus labels.

Kept apart from the layout so the explanations can be read (and reviewed against the notebooks) in one place.
Markdown; no HTML except the consent banner's class name.
"""

from __future__ import annotations

from .. import CONSENT_RULE

TITLE = "Face-Swap Workbench"

HEADER = f"""# {TITLE}
The DeepFaceLab pipeline, one visible step at a time: **extract → curate → train → merge → export**."""

CONSENT = f"**Consent rule.** {CONSENT_RULE} Every exported video carries a visible SYNTHETIC label and provenance metadata."

PROJECT = """**What is happening here?** A *project* is one folder that holds every stage's inputs and outputs
(`media/`, `frames/`, `aligned/`, `models/`, `merged/`, `output/`). The **source** is the person whose face you
want to see; the **destination** is the video whose face gets replaced. Uploads are copied into the project
folder; the app never reads or writes outside it."""

EXTRACT = """**What is happening here?** For every frame a detector finds each face, a landmark model puts
68 points on it (jaw, brows, nose, eyes, lips), and the face is **aligned**: rotated, scaled and cropped so
that eyes and mouth always land on the same pixels. Alignment is why a small network can learn a face at
all: it no longer has to learn where the face is, only what it looks like. Each aligned face file carries its
landmarks, the crop matrix and its source frame, so the merger can later paste the swap back exactly."""

CURATE = """**Curate the faceset.** The model learns whatever you show it: blurry, half-hidden or wrong-person
faces teach it blur and the wrong identity. Sort by sharpness, pose or similarity, click faces to select them
and move them to the trash folder (nothing is ever deleted). A reference photo keeps only one person."""

TRAIN = """**What is happening here?** One **shared encoder** turns any face into a short code (the latent
vector); two **decoders** learn to draw that code back as person A (source) or as person B (destination).
Because the encoder is shared, the code has to describe pose, expression and lighting in a way both decoders
understand. The swap is then simply: encode a destination face, decode it with the *source* decoder. Training
runs in a separate background process; closing this page (or restarting the app) does not stop it."""

PREVIEW = """The preview columns are, left to right: source, source→source (reconstruction), destination,
destination→destination, and **source→destination: the swap**. The right half shows the same with masks."""

LATENT = """**Inside the model.** *Reconstruct* pushes one face through both decoders: the same code drawn as
either person. *Interpolate* walks in a straight line between the codes of two faces and decodes every point:
a smooth morph means the model has learned a continuous face space rather than memorised pictures."""

MERGE = """**What is happening here?** For every destination frame the face is cropped as in training, the
model draws the source person in that pose, and the result is pasted back through a soft **mask**. The swapped
face was lit and coloured like the source footage, so **colour transfer** (RCT, LCT, MKL, IDT, SOT...) shifts
its colour statistics towards the destination face before blending; without it the face looks pasted on.
The model runs once per frame; changing a setting only re-composites, so the frame updates at once."""

OVERRIDES = """**Per-frame-range overrides.** A hard shot (a turn, a shadow) may need other settings than the
rest of the clip. Overrides are saved in `merge.json`; later ones win where ranges overlap."""

EXPORT = """**What is happening here?** The merged frames are encoded as H.264 with each frame's original
timestamp, the destination's audio is copied across, a visible **SYNTHETIC** corner label is drawn, and a
provenance record (tool, version, model, hashes of the inputs, time) is written into the file's metadata.
Anyone can read it back, so the video stays labelled as synthetic wherever it goes."""

NO_PROJECT = "No project is open. Create one or open an existing one in the **Project** tab."

SEGMENT = """**Segment (XSeg).** The landmark hull cannot know about a hand, a microphone or hair in front of the face,
so the swap would be pasted over it. XSeg is a small segmentation network that learns *the visible face*. With
no labels at all it bootstraps from hull masks with synthetic occluders; draw include (green) / exclude (red)
polygons on faces where its prediction (magenta) is wrong, train again, then **Apply** the masks: masked
training and the merger's `xseg-*` mask modes use them. Click to add points; every click is saved in the face
file. Keys: A/D previous/next, Q/W include/exclude, C close, Z undo, Del delete polygon."""
