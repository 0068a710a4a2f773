"""The embedded dataset's animals: species, a 3-D quadruped skeleton, pose sampling and projection.

An animal is a handful of 3-D primitives (tapered capsules, spheres, ear triangles) hung on a skeleton in the
animal's own frame (x forward, y up, z towards the animal's left). A pose bends the joints; a camera rotation
(yaw about the vertical, an elevation looking down on the animal, in-plane roll) and a perspective projection put
it in the image, and the depth of every primitive decides the drawing order. Left/right are therefore real, and
visible as a camera sees a real animal: when an animal faces right its left side is towards the camera; its right
legs stand behind the body, their paws sit higher in the image (the camera looks down) and smaller (further away),
and `scene.py` draws them in the shadow of the body.

Everything here is pure numpy and deterministic given a numpy Generator; `scene.py` rasterises the result.
"""
from dataclasses import dataclass

import numpy as np

KEYPOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "withers", "tail_base", "tail_tip",
    "left_front_knee", "right_front_knee", "left_front_paw", "right_front_paw",
    "left_back_knee", "right_back_knee", "left_back_paw", "right_back_paw",
]
K = len(KEYPOINTS)
_ix = {n: i for i, n in enumerate(KEYPOINTS)}
FLIP_PAIRS = [(_ix["left_" + n], _ix["right_" + n]) for n in
              ("eye", "ear", "front_knee", "front_paw", "back_knee", "back_paw")]
SKELETON = [(_ix[a], _ix[b]) for a, b in [
    ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
    ("left_ear", "withers"), ("right_ear", "withers"), ("withers", "tail_base"), ("tail_base", "tail_tip"),
    ("withers", "left_front_knee"), ("left_front_knee", "left_front_paw"),
    ("withers", "right_front_knee"), ("right_front_knee", "right_front_paw"),
    ("tail_base", "left_back_knee"), ("left_back_knee", "left_back_paw"),
    ("tail_base", "right_back_knee"), ("right_back_knee", "right_back_paw")]]
ATTRIBUTES = ["facing_left", "paw_raised", "head_down", "tail_up"]


@dataclass(frozen=True)
class Species:
    name: str
    colour: tuple            # base coat colour, RGB in [0, 1]
    pattern: str             # stripes | spots | patches | solid | saddle
    pattern_colour: tuple
    pattern_scale: float     # pattern period as a fraction of the body length
    r_hip: float = 0.17      # body radius at the hips (body length = 1)
    r_shoulder: float = 0.19
    leg_up: float = 0.30     # upper / lower leg segment lengths
    leg_low: float = 0.28
    leg_r: float = 0.055     # (x LEG_WIDTH when drawn)
    neck_len: float = 0.22
    neck_r: float = 0.08
    neck_angle: float = 35.0  # resting neck elevation, degrees above the horizontal
    head_r: float = 0.16
    snout_len: float = 0.12
    snout_r: float = 0.05
    ear_len: float = 0.08
    tail_len: float = 0.6
    tail_r: float = 0.03
    paw_colour: tuple = (0.15, 0.12, 0.1)


LEG_WIDTH = 1.4       # legs drawn thicker than the species' radius, so they read at small input sizes
STANCE = 0.9          # leg roots at +-STANCE x body radius from the midline (near and far legs apart)


SPECIES = [
    Species("tiger", (0.88, 0.48, 0.12), "stripes", (0.08, 0.05, 0.03), 0.11, r_hip=0.17, r_shoulder=0.2,
            leg_up=0.27, leg_low=0.25, tail_len=0.75, head_r=0.17, snout_len=0.09),
    Species("cheetah", (0.92, 0.78, 0.45), "spots", (0.1, 0.08, 0.05), 0.07, r_hip=0.12, r_shoulder=0.14,
            leg_up=0.36, leg_low=0.34, leg_r=0.04, tail_len=0.8, tail_r=0.022, head_r=0.13, snout_len=0.07),
    Species("zebra", (0.95, 0.95, 0.93), "stripes", (0.05, 0.05, 0.05), 0.07, r_hip=0.2, r_shoulder=0.2,
            leg_up=0.36, leg_low=0.38, leg_r=0.05, neck_len=0.38, neck_r=0.1, neck_angle=55, head_r=0.13,
            snout_len=0.24, snout_r=0.06, ear_len=0.1, tail_len=0.45, paw_colour=(0.05, 0.05, 0.05)),
    Species("bear", (0.42, 0.26, 0.14), "solid", (0.3, 0.18, 0.1), 0.2, r_hip=0.26, r_shoulder=0.28,
            leg_up=0.22, leg_low=0.2, leg_r=0.09, neck_len=0.14, neck_r=0.14, neck_angle=15, head_r=0.2,
            snout_len=0.1, snout_r=0.07, ear_len=0.05, tail_len=0.1, tail_r=0.05),
    Species("giraffe", (0.93, 0.8, 0.5), "patches", (0.55, 0.3, 0.1), 0.16, r_hip=0.17, r_shoulder=0.2,
            leg_up=0.45, leg_low=0.45, leg_r=0.045, neck_len=0.7, neck_r=0.07, neck_angle=65, head_r=0.11,
            snout_len=0.14, snout_r=0.045, ear_len=0.07, tail_len=0.5, tail_r=0.02),
    Species("wolf", (0.55, 0.55, 0.56), "saddle", (0.25, 0.24, 0.24), 0.3, r_hip=0.14, r_shoulder=0.17,
            leg_up=0.3, leg_low=0.29, leg_r=0.05, neck_len=0.2, neck_angle=30, head_r=0.15, snout_len=0.15,
            snout_r=0.045, ear_len=0.1, tail_len=0.5, tail_r=0.05),
    Species("cow", (0.96, 0.95, 0.92), "patches", (0.08, 0.07, 0.07), 0.3, r_hip=0.24, r_shoulder=0.25,
            leg_up=0.27, leg_low=0.27, leg_r=0.07, neck_len=0.18, neck_r=0.12, neck_angle=20, head_r=0.16,
            snout_len=0.16, snout_r=0.08, ear_len=0.06, tail_len=0.55, tail_r=0.025),
    Species("panther", (0.12, 0.11, 0.12), "solid", (0.2, 0.18, 0.2), 0.2, r_hip=0.13, r_shoulder=0.15,
            leg_up=0.3, leg_low=0.28, leg_r=0.05, tail_len=0.85, tail_r=0.035, head_r=0.15, snout_len=0.07,
            paw_colour=(0.05, 0.05, 0.05)),
]
SPECIES_NAMES = [s.name for s in SPECIES]

# colour classes of the primitives (scene.py maps them to RGB): coat carries the species pattern
COAT, PAW, EYE, EAR, NOSE = range(5)


def rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def sample_pose(rng: np.random.Generator) -> dict:
    """Random joint angles (radians), camera angles and the binary attributes they imply."""
    d = np.deg2rad
    facing_left = rng.random() < 0.5
    paw_raised = rng.random() < 0.3
    head_down = rng.random() < 0.3
    tail_up = rng.random() < 0.4
    phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 1.0)
    legs = {}
    for name, off in (("lf", 0.0), ("rf", np.pi), ("lb", np.pi * 0.5), ("rb", np.pi * 1.5)):
        up = amp * d(35) * np.sin(phase + off) + rng.normal(0, d(6))
        bend = amp * d(40) * max(0.0, np.sin(phase + off + 1.2)) + abs(rng.normal(0, d(8)))
        legs[name] = [up, bend]
    raised_side = None
    if paw_raised:
        raised_side = "lf" if rng.random() < 0.5 else "rf"
        legs[raised_side] = [d(rng.uniform(55, 95)), d(rng.uniform(70, 120))]
    return dict(
        yaw=(np.pi if facing_left else 0.0) + d(rng.uniform(-60, 60)),
        tilt=d(rng.uniform(12, 40)), roll=d(rng.normal(0, 22)), pitch=d(rng.normal(0, 6)),
        distance=rng.uniform(2.2, 4.0),   # camera distance in body lengths: nearer parts look larger
        neck=d(rng.uniform(-45, -15)) if head_down else d(rng.uniform(-10, 20)),
        head=d(rng.uniform(-40, 10)), legs=legs,
        tail=[d(rng.uniform(25, 60)) if tail_up else d(rng.uniform(-80, -35))] + list(
            d(rng.normal(12 if tail_up else -6, 15, size=3))),
        attributes=dict(facing_left=int(facing_left), paw_raised=int(paw_raised), head_down=int(head_down),
                        tail_up=int(tail_up)),
    )


def build(sp: Species, pose: dict, jitter: np.ndarray):
    """3-D keypoints (K, 3) and primitives of one animal in its own frame.

    jitter: (6,) multiplicative individual variation of (body length, body radius, legs, neck, head, tail).
    A primitive is (kind, points (n, 3), radii (n,), colour class, owner keypoints); kinds: 'capsule', 'sphere', 'tri'.
    """
    L, rb, lg, nk, hd, tl = jitter
    half = 0.5 * L
    pitch = rot_z(pose["pitch"])
    hip, shoulder = pitch @ np.array([-half, 0, 0]), pitch @ np.array([half, 0, 0])
    r_hip, r_sh = sp.r_hip * rb, sp.r_shoulder * rb
    kp = np.zeros((K, 3))
    prims = []
    # body: three tapered segments so that depth ordering stays right when the animal turns
    mid = 0.5 * (hip + shoulder)
    r_mid = 0.5 * (r_hip + r_sh) * 1.05
    prims += [("capsule", np.stack([hip, mid]), np.array([r_hip, r_mid]), COAT, ("tail_base",)),
              ("capsule", np.stack([mid, shoulder]), np.array([r_mid, r_sh]), COAT, ("withers",))]
    withers = shoulder + np.array([0.0, 0.8 * r_sh, 0.0])
    kp[_ix["withers"]] = withers
    # neck and head
    na = np.deg2rad(sp.neck_angle) + pose["neck"]
    neck_dir = np.array([np.cos(na), np.sin(na), 0.0])
    head = withers + neck_dir * (sp.neck_len * nk + 0.5 * r_sh)
    prims.append(("capsule", np.stack([withers, head]), np.array([sp.neck_r * rb, 0.8 * sp.head_r * hd]), COAT,
                  ("withers",)))
    hr = sp.head_r * hd
    prims.append(("sphere", head[None], np.array([hr]), COAT, ()))
    ha = na + pose["head"] - np.deg2rad(60)
    nose = head + np.array([np.cos(ha), np.sin(ha), 0.0]) * (hr + sp.snout_len * hd)
    prims.append(("capsule", np.stack([head, nose]), np.array([0.85 * hr, sp.snout_r * hd]), COAT, ("nose",)))
    prims.append(("sphere", nose[None], np.array([0.55 * sp.snout_r * hd]), NOSE, ("nose",)))
    kp[_ix["nose"]] = nose
    fwd = np.array([np.cos(ha), np.sin(ha), 0.0])
    up = np.array([-np.sin(ha), np.cos(ha), 0.0])
    for side, z in (("left", 1.0), ("right", -1.0)):
        eye = head + hr * (0.45 * fwd + 0.35 * up + np.array([0, 0, 0.72 * z]))
        prims.append(("sphere", eye[None], np.array([0.2 * hr]), EYE, (side + "_eye",)))
        kp[_ix[side + "_eye"]] = eye
        base = head + hr * (-0.35 * fwd + 0.75 * up)
        b0, b1 = base + np.array([0, 0, 0.25 * hr * z]) - 0.3 * hr * fwd, base + np.array([0, 0, 0.8 * hr * z])
        tip = base + np.array([0, 0, 0.6 * hr * z]) + (sp.ear_len * hd + 0.2 * hr) * (0.9 * up - 0.3 * fwd)
        prims.append(("tri", np.stack([b0, b1, tip]), np.zeros(3), EAR, (side + "_ear",)))
        kp[_ix[side + "_ear"]] = (b0 + b1) * 0.2 + tip * 0.6
    # legs: upper angle from the vertical (positive = forward), knee bends the lower segment backwards
    for name, root, rr in (("front", shoulder, r_sh), ("back", hip, r_hip)):
        for side, z in (("left", 1.0), ("right", -1.0)):
            up_a, bend = pose["legs"][side[0] + name[0]]
            top = root + np.array([0.0, -0.35 * rr, STANCE * rr * z])
            knee = top + sp.leg_up * lg * np.array([np.sin(up_a), -np.cos(up_a), 0.03 * z])
            low_a = up_a - bend if name == "front" else up_a + 0.6 * bend
            paw = knee + sp.leg_low * lg * np.array([np.sin(low_a), -np.cos(low_a), 0.05 * z])
            r = LEG_WIDTH * sp.leg_r * rb
            prims.append(("capsule", np.stack([top, knee]), np.array([1.35 * r, r]), COAT,
                          (f"{side}_{name}_knee",)))
            prims.append(("capsule", np.stack([knee, paw]), np.array([r, 0.8 * r]), COAT,
                          (f"{side}_{name}_knee", f"{side}_{name}_paw")))
            prims.append(("sphere", paw[None], np.array([1.05 * r]), PAW, (f"{side}_{name}_paw",)))
            kp[_ix[f"{side}_{name}_knee"]], kp[_ix[f"{side}_{name}_paw"]] = knee, paw
    # tail: a chain of segments
    p = hip + np.array([-0.85 * r_hip, 0.35 * r_hip, 0.0])
    kp[_ix["tail_base"]] = p
    seg = sp.tail_len * tl / len(pose["tail"])
    a = np.pi
    for i, da in enumerate(pose["tail"]):
        a -= da
        q = p + seg * np.array([np.cos(a), np.sin(a), 0.0])
        r0 = 1.6 * sp.tail_r * (1.0 - 0.15 * i)
        owners = ("tail_base",) if i == 0 else (("tail_tip",) if i == len(pose["tail"]) - 1 else ())
        prims.append(("capsule", np.stack([p, q]), np.array([r0, 0.85 * r0]), COAT, owners))
        p = q
    kp[_ix["tail_tip"]] = p
    return kp, prims


def camera(pose: dict) -> np.ndarray:
    """(3, 3) rotation from the animal frame to the camera frame (x right, y up, z towards the viewer)."""
    return rot_z(pose["roll"]) @ rot_x(pose["tilt"]) @ rot_y(pose["yaw"])


def project(points: np.ndarray, R: np.ndarray, scale: float, centre: np.ndarray, distance: float = None):
    """Perspective projection of (n, 3) animal-frame points seen from `distance` body lengths (None: orthographic):
    image xy (n, 2) (y down) and depth (n,) (larger = nearer the camera)."""
    c = points @ R.T
    f = 1.0 if distance is None else distance / (distance - c[:, 2:3])
    xy = np.stack([c[:, 0], -c[:, 1]], axis=1) * f * scale + centre
    return xy, c[:, 2]
