"""FakeComfyUI: an aiohttp server on 127.0.0.1 that speaks ComfyUI 0.3.64's HTTP + WebSocket API.

Behaves as shared/comfyui-protocol.md records (message order and shapes, the 400 bodies, history,
/view with real PNG and mp4 bytes, one job at a time), with switches to inject faults. Imports the
standard library, aiohttp, Pillow and (for videos) imageio-ffmpeg; never the project's packages.

    async with FakeComfyUI(job_seconds=0.05) as fake:
        ... ComfyPool([fake.url]) ...
        fake.prompts[-1].prompt          # what was queued
        fake.faults.fail_class = "VAEDecode"   # the next jobs fail at that node

Records (inspect freely): `prompts`, `uploads`, `interrupts`, `deleted`, `jobs` (start/end times
per job, for idle-gap measurements), `history`, `ws_connections`, `requests` (method and path of
every HTTP request, the WebSocket upgrades included, in arrival order; `count("GET", "/queue")`).
Request costs, as a real server on a network has them: `request_latency` (seconds before each
answer) and `object_info_bytes` (/object_info grows to about that size with made-up custom
nodes, built and encoded on the server's loop as ComfyUI does).
Faults: `faults.reject_next` (canned 400 bodies), `faults.fail_class` (execution_error),
`faults.stall_next` (the next job goes silent until interrupted), `faults.send_success`
(False: end with `executing: null` only, as older servers), `faults.drop_ws_mid_job`
(close every WebSocket halfway through the next job, refusing reconnects for
`faults.ws_refuse_seconds`), `faults.output_bytes` (pad each output file to this size),
`faults.report_as` (report and serve the next output files under hostile names);
hostile servers: `faults.view_trickle` (/view sends a few bytes at a time, seconds apart),
`faults.view_endless` (/view never ends), `faults.preview_bytes` (binary preview frames of that
size), `faults.huge_answers` (JSON answers padded to a size, streamed without a length),
`faults.output_copies` (each output file reported many times);
`await fake.drop_websockets(refuse_seconds)`, `await fake.go_down()` / `await fake.come_up()`
(connections refused; queued jobs keep running, as behind a network cut).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import logging
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, WSCloseCode, web
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from tests.fakes.serving import serve

log = logging.getLogger(__name__)

JSON = dict[str, Any]
Send = Callable[..., Awaitable[None]]

#: node classes that send `progress` messages while they run (the job's time is spent in these)
SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustomAdvanced", "MMAudioSampler"})

#: what the fake has installed, by model folder
DEFAULT_MODELS: dict[str, list[str]] = {
    "checkpoints": ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"],
    "diffusion_models": [
        "wan2.1_t2v_14B_fp8_e4m3fn.safetensors",
        "wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors",
    ],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["wan_2.1_vae.safetensors", "sdxl_vae.safetensors"],
    "clip_vision": ["clip_vision_h.safetensors"],
    "upscale_models": ["4x-UltraSharp.pth", "RealESRGAN_x4plus.pth"],
    "mmaudio": [
        "mmaudio_large_44k_v2_fp16.safetensors",
        "mmaudio_vae_44k_fp16.safetensors",
        "mmaudio_synchformer_fp16.safetensors",
        "apple_DFN5B-CLIP-ViT-H-14-384_fp16.safetensors",
    ],
}

SAMPLER_NAMES = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "lcm"]
SCHEDULERS = ["normal", "karras", "exponential", "simple", "sgm_uniform", "beta"]
KOKORO_VOICES = [
    "af_heart",
    "af_sarah",
    "af_nicole",
    "am_adam",
    "am_michael",
    "bf_emma",
    "bm_george",
]
KOKORO_LANGUAGES = ["English", "English (British)", "French", "Japanese", "Spanish"]
VIDEO_FORMATS = ["image/gif", "image/webp", "video/h264-mp4", "video/h265-mp4", "video/webm"]


def _int(default: int, lo: int = 0, hi: int = 2**64 - 1) -> list[Any]:
    return ["INT", {"default": default, "min": lo, "max": hi}]


def _float(default: float, lo: float = 0.0, hi: float = 100.0) -> list[Any]:
    return ["FLOAT", {"default": default, "min": lo, "max": hi}]


def _node_table(
    models: Mapping[str, Sequence[str]],
) -> dict[str, tuple[JSON, JSON, list[str], bool]]:
    """class -> (required inputs, optional inputs, output types, is output node)."""

    def m(folder: str) -> list[Any]:
        return [list(models.get(folder, [])), {}]

    latent_size = {"width": _int(512, 16, 16384), "height": _int(512, 16, 16384)}
    return {
        "CheckpointLoaderSimple": (
            {"ckpt_name": m("checkpoints")},
            {},
            ["MODEL", "CLIP", "VAE"],
            False,
        ),
        "EmptyLatentImage": (
            {**latent_size, "batch_size": _int(1, 1, 4096)},
            {},
            ["LATENT"],
            False,
        ),
        "CLIPTextEncode": (
            {"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]},
            {},
            ["CONDITIONING"],
            False,
        ),
        "KSampler": (
            {
                "model": ["MODEL"],
                "seed": _int(0),
                "steps": _int(20, 1, 10000),
                "cfg": _float(8.0),
                "sampler_name": [SAMPLER_NAMES, {}],
                "scheduler": [SCHEDULERS, {}],
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "latent_image": ["LATENT"],
                "denoise": _float(1.0, 0.0, 1.0),
            },
            {},
            ["LATENT"],
            False,
        ),
        "VAEDecode": ({"samples": ["LATENT"], "vae": ["VAE"]}, {}, ["IMAGE"], False),
        "VAEEncode": ({"pixels": ["IMAGE"], "vae": ["VAE"]}, {}, ["LATENT"], False),
        "RepeatLatentBatch": (
            {"samples": ["LATENT"], "amount": _int(1, 1, 64)},
            {},
            ["LATENT"],
            False,
        ),
        "SaveImage": (
            {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
            {},
            [],
            True,
        ),
        "PreviewImage": ({"images": ["IMAGE"]}, {}, [], True),
        # ComfyUI-BRIA_AI-RMBG (github.com/ZHO-ZHO-ZHO/ComfyUI-BRIA_AI-RMBG): the image comes
        # out RGBA, its background transparent
        "BRIA_RMBG_ModelLoader_Zho": ({}, {}, ["RMBGMODEL"], False),
        "BRIA_RMBG_Zho": (
            {"rmbgmodel": ["RMBGMODEL"], "image": ["IMAGE"]},
            {},
            ["IMAGE", "MASK"],
            False,
        ),
        "LoadImage": ({"image": [[], {"image_upload": True}]}, {}, ["IMAGE", "MASK"], False),
        "EmptyImage": (
            {**latent_size, "batch_size": _int(1, 1, 4096), "color": _int(0, 0, 0xFFFFFF)},
            {},
            ["IMAGE"],
            False,
        ),
        "ImageInvert": ({"image": ["IMAGE"]}, {}, ["IMAGE"], False),
        # comfy_extras/nodes_upscale_model.py: the model runs over the image in tiles
        "UpscaleModelLoader": ({"model_name": m("upscale_models")}, {}, ["UPSCALE_MODEL"], False),
        "ImageUpscaleWithModel": (
            {"upscale_model": ["UPSCALE_MODEL"], "image": ["IMAGE"]},
            {},
            ["IMAGE"],
            False,
        ),
        # nodes.py ImageScaleBy
        "ImageScaleBy": (
            {
                "image": ["IMAGE"],
                "upscale_method": [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"], {}],
                "scale_by": _float(1.0, 0.01, 8.0),
            },
            {},
            ["IMAGE"],
            False,
        ),
        "UNETLoader": (
            {
                "unet_name": m("diffusion_models"),
                "weight_dtype": [["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"], {}],
            },
            {},
            ["MODEL"],
            False,
        ),
        # a schema-v3 style combo, as newer core nodes describe theirs
        "CLIPLoader": (
            {
                "clip_name": m("text_encoders"),
                "type": [
                    "COMBO",
                    {"options": ["stable_diffusion", "sd3", "wan", "ltxv", "hunyuan_video"]},
                ],
            },
            {"device": ["COMBO", {"options": ["default", "cpu"]}]},
            ["CLIP"],
            False,
        ),
        "VAELoader": ({"vae_name": m("vae")}, {}, ["VAE"], False),
        "ModelSamplingSD3": ({"model": ["MODEL"], "shift": _float(3.0)}, {}, ["MODEL"], False),
        "EmptyHunyuanLatentVideo": (
            {**latent_size, "length": _int(25, 1, 16384), "batch_size": _int(1, 1, 4096)},
            {},
            ["LATENT"],
            False,
        ),
        "CLIPVisionLoader": ({"clip_name": m("clip_vision")}, {}, ["CLIP_VISION"], False),
        "CLIPVisionEncode": (
            {"clip_vision": ["CLIP_VISION"], "image": ["IMAGE"], "crop": [["center", "none"], {}]},
            {},
            ["CLIP_VISION_OUTPUT"],
            False,
        ),
        "WanImageToVideo": (
            {
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "vae": ["VAE"],
                **latent_size,
                "length": _int(81, 1, 16384),
                "batch_size": _int(1, 1, 4096),
            },
            {"clip_vision_output": ["CLIP_VISION_OUTPUT"], "start_image": ["IMAGE"]},
            ["CONDITIONING", "CONDITIONING", "LATENT"],
            False,
        ),
        "MMAudioModelLoader": (
            {"mmaudio_model": m("mmaudio"), "base_precision": [["fp16", "fp32", "bf16"], {}]},
            {},
            ["MMAUDIO_MODEL"],
            False,
        ),
        "MMAudioFeatureUtilsLoader": (
            {
                "vae_model": m("mmaudio"),
                "synchformer_model": m("mmaudio"),
                "clip_model": m("mmaudio"),
            },
            {
                "bigvgan_vocoder_model": ["VOCODER_MODEL"],
                "mode": [["16k", "44k"], {}],
                "precision": [["fp16", "fp32", "bf16"], {}],
            },
            ["MMAUDIO_FEATUREUTILS"],
            False,
        ),
        "MMAudioSampler": (
            {
                "mmaudio_model": ["MMAUDIO_MODEL"],
                "feature_utils": ["MMAUDIO_FEATUREUTILS"],
                "duration": _float(8.0),
                "steps": _int(25, 1),
                "cfg": _float(4.5),
                "seed": _int(0),
                "prompt": ["STRING", {"multiline": True}],
                "negative_prompt": ["STRING", {"multiline": True}],
                "mask_away_clip": ["BOOLEAN", {"default": False}],
                "force_offload": ["BOOLEAN", {"default": True}],
            },
            {"images": ["IMAGE"]},
            ["AUDIO"],
            False,
        ),
        "VHS_VideoCombine": (
            {
                "images": ["IMAGE"],
                "frame_rate": _float(8.0, 1.0),
                "loop_count": _int(0),
                "filename_prefix": ["STRING", {"default": "AnimateDiff"}],
                "format": [VIDEO_FORMATS, {}],
                "pingpong": ["BOOLEAN", {"default": False}],
                "save_output": ["BOOLEAN", {"default": True}],
            },
            {"audio": ["AUDIO"], "meta_batch": ["VHS_BatchManager"], "vae": ["VAE"]},
            [],
            True,
        ),
        # text to speech: stavsap/comfyui-kokoro's nodes, and ComfyUI's own SaveAudio (FLAC)
        "KokoroSpeaker": (
            {"speaker_name": [KOKORO_VOICES, {"default": "af_sarah"}]},
            {},
            ["KOKORO_SPEAKER"],
            False,
        ),
        "KokoroGenerator": (
            {
                "text": ["STRING", {"multiline": True, "default": "I am a synthesized robot"}],
                "speaker": ["KOKORO_SPEAKER"],
                "speed": _float(1.0, 0.1, 4.0),
                "lang": [KOKORO_LANGUAGES, {"default": "English"}],
            },
            {},
            ["AUDIO"],
            False,
        ),
        "SaveAudio": (
            {"audio": ["AUDIO"], "filename_prefix": ["STRING", {"default": "audio/ComfyUI"}]},
            {},
            [],
            True,
        ),
    }


# ---------------------------------------------------------------- media made once per process

_media_lock = threading.Lock()
_mp4_cache: dict[bool, bytes] = {}


def _mp4_bytes(with_audio: bool) -> bytes:
    """A real 1 s 64x64 H.264 mp4 (with an AAC tone if asked), made once by imageio-ffmpeg."""
    with _media_lock:
        if with_audio not in _mp4_cache:
            import imageio_ffmpeg  # imported here: only video jobs need it

            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "clip.mp4"
                cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error"]
                cmd += ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=8:duration=1"]
                if with_audio:
                    cmd += ["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac"]
                cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-shortest", "-y", str(out)]
                subprocess.run(cmd, check=True, capture_output=True, timeout=60)
                _mp4_cache[with_audio] = out.read_bytes()
        return _mp4_cache[with_audio]


def _spoken_text(prompt: JSON) -> str:
    """What the prompt's text-to-speech node is asked to say (its `text` input)."""
    for node in prompt.values():
        if node.get("class_type") == "KokoroGenerator":
            return str(node.get("inputs", {}).get("text", ""))
    return ""


def _flac_bytes(text: str) -> bytes:
    """Real FLAC audio of `text` spoken, as long as the fake speech endpoint speaks it."""
    from tests.fakes.openai_api import encoded_audio, speech_seconds, wav_bytes

    return encoded_audio(wav_bytes(speech_seconds(text)), "flac")


def _png_bytes(prompt: JSON, seed: str, size: int = 64) -> bytes:
    """A real PNG with the prompt embedded as a text chunk "prompt", as SaveImage does: one
    colour but for a plain frame in a far one (the "background" around the subject,
    an eighth of the side wide). Behind a background-removal node (BRIA RMBG) the frame is
    transparent, as that node's RGBA image is."""
    digest = hashlib.sha256(seed.encode()).digest()
    colour = (digest[0], digest[1], digest[2])
    frame = (colour[0] ^ 128, colour[1] ^ 128, colour[2] ^ 128)  # 128 apart in each channel
    image = Image.new("RGB", (size, size), frame)
    inner = (size // 8, size // 8, size - size // 8 - 1, size - size // 8 - 1)
    ImageDraw.Draw(image).rectangle(inner, fill=colour)
    if any(isinstance(n, dict) and n.get("class_type") == "BRIA_RMBG_Zho" for n in prompt.values()):
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).rectangle(inner, fill=255)
        image.putalpha(mask)
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=1)
    return buffer.getvalue()


def _write_file(path: Path, data: bytes, pad_to: int | None) -> None:
    """Write a media file; `pad_to` grows it (a PNG with a private chunk, else zeros)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        if pad_to is None or pad_to <= len(data):
            fh.write(data)
            return
        extra = pad_to - len(data)
        if data.startswith(b"\x89PNG") and extra > 12:
            fh.write(data[:-12])  # everything before IEND
            length = extra - 12
            fh.write(length.to_bytes(4, "big") + b"prVt")
            crc = zlib.crc32(b"prVt")
            block = bytes(1 << 20)
            left = length
            while left:
                piece = block[: min(left, len(block))]
                fh.write(piece)
                crc = zlib.crc32(piece, crc)
                left -= len(piece)
            fh.write(crc.to_bytes(4, "big"))
            fh.write(data[-12:])
        else:
            fh.write(data)
            fh.write(bytes(extra))


def _store_upload(folder: Path, filename: str, data: bytes, overwrite: bool) -> str:
    """Save an upload as ComfyUI does: `name (1).png` when taken, unless the bytes are equal."""
    name = filename
    stem, dot, ext = filename.rpartition(".")
    number = 0
    while not overwrite and (folder / name).exists():
        if (folder / name).read_bytes() == data:
            return name  # the same image again: ComfyUI reuses the name
        number += 1
        name = f"{stem} ({number}){dot}{ext}" if dot else f"{filename} ({number})"
    _write_file(folder / name, data, None)
    return name


# ---------------------------------------------------------------- validation and caching, as
# ComfyUI's execution.py does them (validate_prompt / validate_inputs, per-node signatures)


def _validation_error(kind: str, message: str, details: str, **extra: Any) -> JSON:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _traceback_of(exc: BaseException) -> list[str]:
    import traceback

    return traceback.format_tb(exc.__traceback__)


def _types_match(received: object, wanted: object) -> bool:
    """comfy_execution.validation.validate_node_input: equal, `*`, or unions that meet."""
    if received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in wanted.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def _declared_inputs(spec: JSON) -> dict[str, tuple[list[Any], str]]:
    return {
        name: (declared, group)
        for group in ("required", "optional")
        for name, declared in (spec.get(group) or {}).items()
    }


def _validate_inputs(
    prompt: JSON,
    info: dict[str, JSON],
    unique_id: str,
    validated: dict[str, tuple[bool, list[JSON], str]],
    input_folder: Path,
) -> tuple[bool, list[JSON], str]:
    """execution.validate_inputs: one node's errors, after the nodes it links to (recursively).

    A link to a node id that is not in the prompt raises KeyError here, as on the server, where
    the caller turns it into `exception_during_(inner_)validation`.
    """
    if unique_id in validated:
        return validated[unique_id]
    inputs = prompt[unique_id]["inputs"]
    class_type = prompt[unique_id]["class_type"]
    errors: list[JSON] = []
    valid = True
    for name, (declared, group) in _declared_inputs(info[class_type]["input"]).items():
        if name not in inputs:
            if group == "required":
                errors.append(
                    _validation_error(
                        "required_input_missing", "Required input is missing", name, input_name=name
                    )
                )
            continue
        value = inputs[name]
        input_type = declared[0]
        extra = declared[1] if len(declared) > 1 else {}
        if isinstance(value, list):
            if len(value) != 2:
                errors.append(
                    _validation_error(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        name,
                        input_name=name,
                        input_config=declared,
                        received_value=value,
                    )
                )
                continue
            linked_id = value[0]
            received = info[prompt[linked_id]["class_type"]]["output"][value[1]]
            if not _types_match(received, input_type):
                errors.append(
                    _validation_error(
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        f"{name}, received_type({received}) mismatch input_type({input_type})",
                        input_name=name,
                        input_config=declared,
                        received_type=received,
                        linked_node=value,
                    )
                )
                continue
            try:
                if not _validate_inputs(prompt, info, linked_id, validated, input_folder)[0]:
                    valid = False
            except Exception as exc:  # noqa: BLE001  # as execution.py: any failure is a validation error
                valid = False
                validated[linked_id] = (
                    False,
                    [
                        _validation_error(
                            "exception_during_inner_validation",
                            "Exception when validating inner node",
                            str(exc),
                            input_name=name,
                            input_config=declared,
                            exception_message=str(exc),
                            exception_type=type(exc).__name__,
                            traceback=_traceback_of(exc),
                            linked_node=value,
                        )
                    ],
                    linked_id,
                )
            continue
        try:
            if input_type == "INT":
                value = int(value)
            elif input_type == "FLOAT":
                value = float(value)
            elif input_type == "STRING":
                value = str(value)
            elif input_type == "BOOLEAN":
                value = bool(value)
        except Exception as exc:  # noqa: BLE001  # as execution.py: any failure is a validation error
            errors.append(
                _validation_error(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {input_type} value",
                    f"{name}, {value}, {exc}",
                    input_name=name,
                    input_config=declared,
                    received_value=value,
                    exception_message=str(exc),
                )
            )
            continue
        if class_type == "LoadImage" and name == "image":  # its VALIDATE_INPUTS replaces the rest
            if not (input_folder / str(value)).is_file():
                errors.append(
                    _validation_error(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        f"image - Invalid image file: {value}",
                        input_name="image",
                    )
                )
            continue
        if "min" in extra and value < extra["min"]:
            errors.append(
                _validation_error(
                    "value_smaller_than_min",
                    f"Value {value} smaller than min of {extra['min']}",
                    name,
                    input_name=name,
                    input_config=declared,
                    received_value=value,
                )
            )
            continue
        if "max" in extra and value > extra["max"]:
            errors.append(
                _validation_error(
                    "value_bigger_than_max",
                    f"Value {value} bigger than max of {extra['max']}",
                    name,
                    input_name=name,
                    input_config=declared,
                    received_value=value,
                )
            )
            continue
        choices = extra.get("options", []) if input_type == "COMBO" else input_type
        if isinstance(choices, list) and value not in choices:
            shown = f"(list of length {len(choices)})" if len(choices) > 20 else str(choices)
            errors.append(
                _validation_error(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: '{value}' not in {shown}",
                    input_name=name,
                    input_config=declared if len(choices) <= 20 else None,
                    received_value=value,
                )
            )
    result = (not errors and valid, errors, unique_id)
    validated[unique_id] = result
    return result


def validate_prompt(
    prompt: JSON, info: dict[str, JSON], input_folder: Path
) -> tuple[JSON | None, list[str], JSON]:
    """execution.validate_prompt: (400 body or None, the outputs that will run, node_errors).

    Only what an output node needs is validated; the prompt is refused when no output is valid,
    and accepted with `node_errors` (the bad outputs dropped) when some are.
    """
    for node_id, node in prompt.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if class_type is None:
            message = "Cannot execute because a node is missing the class_type property."
        elif class_type not in info:
            message = f"Cannot execute because node {class_type} does not exist."
        else:
            continue
        error = _validation_error("invalid_prompt", message, f"Node ID '#{node_id}'")
        return {"error": error, "node_errors": {}}, [], {}
    outputs = [nid for nid, node in prompt.items() if info[node["class_type"]]["output_node"]]
    if not outputs:
        error = _validation_error("prompt_no_outputs", "Prompt has no outputs", "")
        return {"error": error, "node_errors": {}}, [], {}
    good: list[str] = []
    failed: list[tuple[str, list[JSON]]] = []
    node_errors: JSON = {}
    validated: dict[str, tuple[bool, list[JSON], str]] = {}
    for output in outputs:
        try:
            valid, reasons, _ = _validate_inputs(prompt, info, output, validated, input_folder)
        except Exception as exc:  # noqa: BLE001  # as execution.py: any failure is a validation error
            valid = False
            reasons = [
                _validation_error(
                    "exception_during_validation",
                    "Exception when validating node",
                    str(exc),
                    exception_type=type(exc).__name__,
                    traceback=_traceback_of(exc),
                )
            ]
            validated[output] = (False, reasons, output)
        if valid:
            good.append(output)
            continue
        failed.append((output, reasons))
        for node_id, (ok, found, _) in validated.items():
            if not ok and found:
                entry = node_errors.setdefault(
                    node_id,
                    {
                        "errors": found,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failed for e in errs)
        error = _validation_error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        )
        return {"error": error, "node_errors": node_errors}, [], node_errors
    return None, good, node_errors


def needed_nodes(prompt: JSON, outputs: Sequence[str]) -> set[str]:
    """The output nodes and every node they reach through links (what the server runs)."""
    needed: set[str] = set()
    todo = list(outputs)
    while todo:
        node_id = todo.pop()
        if node_id in needed or node_id not in prompt:
            continue
        needed.add(node_id)
        for value in (prompt[node_id].get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2:
                todo.append(str(value[0]))
    return needed


def node_signatures(prompt: JSON, input_folder: Path) -> dict[str, str]:
    """Per node, a digest of its class, its values and (recursively) what its links reach: the
    cache key, as CacheKeySetInputSignature. A LoadImage's key includes its file's bytes, as its
    IS_CHANGED does."""
    done: dict[str, str] = {}

    def signature(node_id: str, path: frozenset[str]) -> str:
        if node_id in done:
            return done[node_id]
        node = prompt[node_id]
        parts: dict[str, Any] = {"class_type": node["class_type"]}
        for name, value in sorted((node.get("inputs") or {}).items()):
            linked = str(value[0]) if isinstance(value, list) and len(value) == 2 else None
            if linked is not None and linked in prompt and linked not in path:
                parts[name] = ["link", signature(linked, path | {node_id}), value[1]]
            else:
                parts[name] = value
        if node["class_type"] == "LoadImage":
            image = input_folder / str(parts.get("image", ""))
            parts["is_changed"] = (
                hashlib.sha256(image.read_bytes()).hexdigest() if image.is_file() else ""
            )
        done[node_id] = hashlib.sha256(
            json.dumps(parts, sort_keys=True, default=str).encode()
        ).hexdigest()
        return done[node_id]

    return {node_id: signature(node_id, frozenset()) for node_id in prompt}


@functools.lru_cache(maxsize=4)
def _custom_nodes(size: int) -> dict[str, JSON]:
    """Made-up custom node classes, about `size` bytes of /object_info, shaped as real ones
    (inputs with ranges, choice lists of installed files, several outputs). Kept: callers
    only read it."""
    nodes: dict[str, JSON] = {}
    total = 0
    for number in itertools.count():
        if total >= size:
            break
        name = f"CustomPack{number // 20}_Node{number}"
        required = {
            "model": ["MODEL"],
            "image": ["IMAGE"],
            "strength": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}],
            "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
            "preset": [[f"preset_{number}_{i}.safetensors" for i in range(12)], {}],
            "text": ["STRING", {"multiline": True, "default": ""}],
        }
        node: JSON = {
            "input": {"required": required, "optional": {"mask": ["MASK"]}},
            "input_order": {"required": list(required), "optional": ["mask"]},
            "output": ["IMAGE", "MASK", "LATENT"],
            "output_is_list": [False, False, False],
            "output_name": ["IMAGE", "MASK", "LATENT"],
            "name": name,
            "display_name": f"Custom node {number}",
            "description": "A node from a custom node pack, as servers with many have them.",
            "python_module": f"custom_nodes.pack_{number // 20}",
            "category": f"custom/pack {number // 20}",
            "output_node": False,
        }
        nodes[name] = node
        total += len(json.dumps(node)) + len(name) + 4
    return nodes


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class ReceivedPrompt:
    """A prompt the fake accepted (and queued)."""

    prompt_id: str
    number: int
    prompt: JSON
    client_id: str | None


@dataclass
class JobRecord:
    """When the fake ran a prompt (time.perf_counter) and how it ended."""

    prompt_id: str
    started: float
    ended: float | None = None
    outcome: str | None = None  # "success", "error", "interrupted", "cached"


@dataclass
class Faults:
    """Switches to make the fake misbehave; change them at any time."""

    reject_next: list[JSON] = field(default_factory=list)  # canned 400 bodies, used in order
    fail_class: str | None = None  # nodes of this class raise (execution_error)
    fail_message: str = (
        "**** ERROR: Saving image outside the output folder is not allowed.\n"
        " full_output_folder: /srv/comfyui/output\n"
    )
    stall_next: bool = False  # the next job to run goes silent and hangs until interrupted
    drop_ws_mid_job: bool = False  # close every WebSocket halfway through the next job
    ws_refuse_seconds: float = 0.0  # after a drop, refuse WebSocket upgrades this long
    output_bytes: int | None = None  # pad each output file to this many bytes
    send_success: bool = True  # False: no `execution_success`, as servers before 2024 did
    #: (subfolder, filename) the next output files are reported under, in order, and served at
    #: /view by those names: a hostile or broken server naming files like `../../evil.png`
    report_as: list[tuple[str, str]] = field(default_factory=list)
    #: (bytes, seconds): /view sends each file this many bytes at a time, this many seconds
    #: apart, as a server or a link that trickles (with `output_bytes`, for as long as needed)
    view_trickle: tuple[int, float] | None = None
    view_endless: bool = False  # /view streams zeros as fast as it can, with no length or end
    #: each sampler step also sends a binary preview frame of this many bytes, as real servers
    #: do with previews on (4-byte event type 1, 4-byte image format, then the image)
    preview_bytes: int | None = None
    #: path prefix ("/history", "/object_info", "/queue", "/prompt"...) -> bytes: JSON answers
    #: under it gain a "padding" string to this size, streamed chunked (no Content-Length)
    huge_answers: dict[str, int] = field(default_factory=dict)
    output_copies: int = 1  # each output file is reported this many times in `executed`


@dataclass
class _Item:
    number: int
    prompt_id: str
    prompt: JSON
    client_id: str | None
    outputs: list[str]

    def row(self) -> list[Any]:
        return [
            self.number,
            self.prompt_id,
            self.prompt,
            {"client_id": self.client_id},
            self.outputs,
        ]


class FakeComfyUI:
    """A ComfyUI server for tests; see the module docstring for the records and fault switches."""

    def __init__(
        self,
        *,
        job_seconds: float = 0.05,
        steps: int = 4,
        models: Mapping[str, Sequence[str]] | None = None,
        input_files: Sequence[str] = (),
        version: str = "0.3.64",
        port: int = 0,
        request_latency: float = 0.0,
        object_info_bytes: int | None = None,
    ) -> None:
        self.job_seconds = job_seconds
        self.request_latency = request_latency
        self.object_info_bytes = object_info_bytes
        self.requests: list[tuple[str, str]] = []
        self.steps = steps
        self.models = {k: list(v) for k, v in (models or DEFAULT_MODELS).items()}
        self.version = version
        self.faults = Faults()
        self.prompts: list[ReceivedPrompt] = []
        self.uploads: dict[str, bytes] = {}
        self.interrupts: list[str | None] = []
        self.deleted: list[str] = []
        self.jobs: list[JobRecord] = []
        self.history: dict[str, JSON] = {}
        self.ws_connections = 0
        self.port = port
        self._input_files = list(input_files)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        #: render threads started and not yet ended: a stop waits for them before it removes
        #: the folders they write into (a cancelled job's thread runs on to its end)
        self._renders = 0
        self._renders_done = threading.Condition()
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._pending: list[_Item] = []
        self._running: _Item | None = None
        self._work = asyncio.Event()
        self._interrupt = asyncio.Event()
        self._number = 0
        self._counters: dict[tuple[str, str], int] = {}
        self._ws_refuse_until = 0.0
        #: per-node cache, as the server's: node signature -> its `executed` output (or None)
        self._node_cache: dict[str, JSON | None] = {}
        self._aliases: dict[tuple[str, str], Path] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root(self) -> Path:
        assert self._tmp is not None, "start the fake first"
        return Path(self._tmp.name)

    def folder(self, kind: str) -> Path:
        """The fake's output / temp / input directory."""
        return self.root / kind

    async def __aenter__(self) -> FakeComfyUI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-comfyui-")
        for kind in ("output", "temp", "input"):
            self.folder(kind).mkdir()
        for name in self._input_files:
            data = await asyncio.to_thread(_png_bytes, {}, name)
            await asyncio.to_thread((self.folder("input") / name).write_bytes, data)
        await self._serve()
        self._worker = asyncio.create_task(self._work_loop(), name="fake-comfyui jobs")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await self._unserve()
        await asyncio.to_thread(self._wait_for_renders)
        if self._tmp is not None:
            await asyncio.to_thread(self._tmp.cleanup)
            self._tmp = None

    async def _serve(self) -> None:
        app = web.Application(
            client_max_size=64 * 2**20, middlewares=[self._costs(), self._padding()]
        )
        app.add_routes(
            [
                web.get("/ws", self._ws),
                web.post("/prompt", self._post_prompt),
                web.get("/prompt", self._get_prompt),
                web.get("/queue", self._get_queue),
                web.post("/queue", self._post_queue),
                web.post("/interrupt", self._post_interrupt),
                web.get("/history", self._get_history_all),
                web.get("/history/{prompt_id}", self._get_history),
                web.get("/view", self._view),
                web.post("/upload/image", self._upload),
                web.get("/object_info", self._object_info),
                web.get("/object_info/{node_class}", self._object_info_one),
                web.get("/system_stats", self._system_stats),
            ]
        )
        self._runner, self.port = await serve(app, self.port, shutdown_timeout=0.5)

    async def _unserve(self) -> None:
        for ws in list(self._sockets.values()):
            await ws.close(code=WSCloseCode.GOING_AWAY)
        self._sockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def go_down(self) -> None:
        """Refuse every connection (as a dead host); jobs already queued keep running."""
        await self._unserve()

    async def come_up(self) -> None:
        """Listen again on the same port."""
        if self._runner is None:
            await self._serve()

    async def drop_websockets(self, refuse_seconds: float = 0.0) -> None:
        """Close every WebSocket now; refuse new ones for `refuse_seconds`."""
        self._ws_refuse_until = time.monotonic() + refuse_seconds
        for ws in list(self._sockets.values()):
            await ws.close(code=WSCloseCode.GOING_AWAY)
        self._sockets.clear()

    async def wait_idle(self) -> None:
        """Until no job runs or waits."""
        await self._idle.wait()

    def idle_gaps(self) -> list[float]:
        """Seconds the fake sat idle between consecutive jobs (end of one, start of the next)."""
        done = [j for j in self.jobs if j.ended is not None]
        return [b.started - a.ended for a, b in itertools.pairwise(done) if a.ended is not None]

    def reject_next(self, body: JSON | None = None) -> None:
        """The next POST /prompt answers 400 with `body` (default: a checkpoint not installed)."""
        self.faults.reject_next.append(
            body
            or {
                "error": {
                    "type": "prompt_outputs_failed_validation",
                    "message": "Prompt outputs failed validation",
                    "details": "",
                    "extra_info": {},
                },
                "node_errors": {
                    "4": {
                        "errors": [
                            {
                                "type": "value_not_in_list",
                                "message": "Value not in list",
                                "details": "ckpt_name: 'missing.safetensors' not in []",
                                "extra_info": {"input_name": "ckpt_name"},
                            }
                        ],
                        "dependent_outputs": ["9"],
                        "class_type": "CheckpointLoaderSimple",
                    }
                },
            }
        )

    # ------------------------------------------------------------ WebSocket

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if time.monotonic() < self._ws_refuse_until:
            return web.Response(status=503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        old = self._sockets.get(sid)
        self._sockets[sid] = ws
        self.ws_connections += 1
        if old is not None and not old.closed:
            await old.close()
        await self._send_ws(ws, "status", {"status": self._exec_info(), "sid": sid})
        async for _ in ws:  # clients send nothing we act on
            pass
        if self._sockets.get(sid) is ws:
            del self._sockets[sid]
        return ws

    @staticmethod
    async def _send_ws(ws: web.WebSocketResponse, kind: str, data: JSON) -> None:
        if ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(json.dumps({"type": kind, "data": data}))

    async def _send(self, client_id: str | None, kind: str, data: JSON) -> None:
        ws = self._sockets.get(client_id) if client_id else None
        if ws is not None:
            await self._send_ws(ws, kind, data)

    async def _broadcast_status(self) -> None:
        for ws in list(self._sockets.values()):
            await self._send_ws(ws, "status", {"status": self._exec_info()})

    def _exec_info(self) -> JSON:
        remaining = len(self._pending) + (1 if self._running else 0)
        return {"exec_info": {"queue_remaining": remaining}}

    # ------------------------------------------------------------ queueing and validation

    def _object_info_dict(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        inputs = sorted(p.name for p in self.folder("input").iterdir() if p.is_file())
        for name, (required, optional, outputs, is_output) in _node_table(self.models).items():
            if name == "LoadImage":
                required = {"image": [inputs, {"image_upload": True}]}
            spec: JSON = {"required": required}
            if optional:
                spec["optional"] = optional
            out[name] = {
                "input": spec,
                "input_order": {k: list(v) for k, v in spec.items()},
                "output": outputs,
                "output_is_list": [False] * len(outputs),
                "output_name": outputs,
                "name": name,
                "display_name": name,
                "description": "",
                "python_module": "nodes",
                "category": "fake",
                "output_node": is_output,
            }
        return out

    def _validate(self, prompt: JSON) -> tuple[JSON | None, list[str], JSON]:
        """(400 body or None, the outputs to run, node_errors), as execution.validate_prompt."""
        return validate_prompt(prompt, self._object_info_dict(), self.folder("input"))

    async def _post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.faults.reject_next:
            return web.json_response(self.faults.reject_next.pop(0), status=400)
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, dict):
            error = {"type": "no_prompt", "message": "No prompt provided", "details": ""}
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        rejection, outputs, node_errors = await asyncio.to_thread(self._validate, prompt)
        if rejection is not None:
            return web.json_response(rejection, status=400)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        number = self._number
        self._number += 1
        client_id = body.get("client_id")
        item = _Item(number, prompt_id, prompt, client_id, outputs)
        bisect.insort(self._pending, item, key=lambda i: i.number)
        self.prompts.append(ReceivedPrompt(prompt_id, number, prompt, client_id))
        self._idle.clear()
        self._work.set()
        await self._broadcast_status()
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}
        )

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self._exec_info())

    async def _get_queue(self, request: web.Request) -> web.Response:
        running = [self._running.row()] if self._running else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [i.row() for i in self._pending]}
        )

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.deleted += [i.prompt_id for i in self._pending]
            self._pending.clear()
        for prompt_id in body.get("delete") or []:
            before = len(self._pending)
            self._pending = [i for i in self._pending if i.prompt_id != prompt_id]
            if len(self._pending) < before:
                self.deleted.append(prompt_id)
        await self._broadcast_status()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        body: JSON = {}
        if request.can_read_body:
            with contextlib.suppress(json.JSONDecodeError):
                body = await request.json()
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        self.interrupts.append(prompt_id)
        if self._running is not None and prompt_id in (None, self._running.prompt_id):
            self._interrupt.set()
        return web.Response(status=200)

    async def _get_history_all(self, request: web.Request) -> web.Response:
        return web.json_response(self.history)

    async def _get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        kind = request.query.get("type", "output")
        if kind not in ("output", "temp", "input"):
            return web.Response(status=400)
        alias = self._aliases.get(
            (request.query.get("subfolder", ""), request.query.get("filename", ""))
        )
        if self.faults.view_endless:
            return await self._view_endless(request)
        if alias is not None and self.faults.view_trickle:
            return await self._view_trickle(request, alias)
        if alias is not None:
            return web.FileResponse(alias)
        base = self.folder(kind).resolve()
        path = (
            base / request.query.get("subfolder", "") / request.query.get("filename", "")
        ).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return web.Response(status=404)
        if self.faults.view_trickle:
            return await self._view_trickle(request, path)
        headers = {"Content-Disposition": f'filename="{path.name}"'}
        return web.FileResponse(path, headers=headers)

    # ------------------------------------------------------------ hostile answers (faults)

    async def _view_trickle(self, request: web.Request, path: Path) -> web.StreamResponse:
        assert self.faults.view_trickle is not None
        count, interval = self.faults.view_trickle
        data = await asyncio.to_thread(path.read_bytes)
        response = web.StreamResponse()
        response.content_length = len(data)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, RuntimeError):  # the client gave up
            for start in range(0, len(data), count):
                await response.write(data[start : start + count])
                await asyncio.sleep(interval)
            await response.write_eof()
        return response

    async def _view_endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        block = bytes(1 << 16)
        with contextlib.suppress(ConnectionError, RuntimeError):  # until the client gives up
            while True:
                await response.write(block)
                await asyncio.sleep(0)
        return response

    async def _send_preview(self, client_id: str | None, size: int) -> None:
        ws = self._sockets.get(client_id) if client_id else None
        if ws is not None and not ws.closed:
            frame = (1).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(max(0, size - 8))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(frame)

    def count(self, method: str, path: str) -> int:
        """How many `method` requests for `path` the fake received."""
        return self.requests.count((method, path))

    def _costs(self) -> Any:
        """Middleware: record each request, then answer it `request_latency` seconds later."""

        @web.middleware
        async def cost(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requests.append((request.method, request.path))
            if self.request_latency > 0:
                await asyncio.sleep(self.request_latency)
            response: web.StreamResponse = await handler(request)
            return response

        return cost

    def _padding(self) -> Any:
        """Middleware for `faults.huge_answers`: the JSON answer gains a long "padding" string,
        streamed in pieces, so a client that reads it whole holds all of it."""

        @web.middleware
        async def pad(request: web.Request, handler: Any) -> web.StreamResponse:
            response: web.StreamResponse = await handler(request)
            size = next(
                (n for p, n in self.faults.huge_answers.items() if request.path.startswith(p)),
                None,
            )
            body = response.body if isinstance(response, web.Response) else None
            if size is None or not isinstance(body, bytes) or not body.startswith(b"{"):
                return response
            rest = body[1:] if body.strip() == b"{}" else b", " + body[1:]
            padded = web.StreamResponse(status=response.status)
            padded.content_type = "application/json"
            padded.enable_chunked_encoding()
            await padded.prepare(request)
            with contextlib.suppress(ConnectionError, RuntimeError):  # the client gave up
                await padded.write(b'{"padding": "')
                left, block = max(0, size - len(body)), b"x" * (1 << 16)
                while left > 0:
                    await padded.write(block[:left])
                    left -= len(block)
                await padded.write(b'"' + rest)
                await padded.write_eof()
            return padded

        return pad

    async def _upload(self, request: web.Request) -> web.Response:
        reader = await request.multipart()
        data: bytes | None = None
        filename = ""
        subfolder = ""
        overwrite = False
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "image":
                filename = Path(str(part.filename or "image.png")).name
                data = bytes(await part.read())
            elif part.name == "subfolder":
                subfolder = await part.text()
            elif part.name == "overwrite":
                overwrite = (await part.text()) == "true"
        if data is None or not filename:
            return web.Response(status=400)
        folder = self.folder("input") / subfolder
        name = await asyncio.to_thread(_store_upload, folder, filename, data, overwrite)
        self.uploads[f"{subfolder}/{name}" if subfolder else name] = data
        return web.json_response({"name": name, "subfolder": subfolder, "type": "input"})

    async def _object_info(self, request: web.Request) -> web.Response:
        info = await asyncio.to_thread(self._object_info_dict)
        if self.object_info_bytes is None:
            return web.json_response(info)
        # ComfyUI builds the answer node by node and encodes it on its event loop: a large
        # node list holds the server (and its other answers) for as long
        return web.json_response(
            info | _custom_nodes(self.object_info_bytes - len(json.dumps(info)))
        )

    async def _object_info_one(self, request: web.Request) -> web.Response:
        info = await asyncio.to_thread(self._object_info_dict)
        name = request.match_info["node_class"]
        return web.json_response({name: info[name]} if name in info else {})

    async def _system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "system": {
                    "os": "posix",
                    "ram_total": 64 * 2**30,
                    "ram_free": 48 * 2**30,
                    "comfyui_version": self.version,
                    "python_version": "3.12.3 (main) [GCC 13.2.0]",
                    "pytorch_version": "2.8.0+cu128",
                    "embedded_python": False,
                    "argv": ["main.py", "--listen"],
                },
                "devices": [
                    {
                        "name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync",
                        "type": "cuda",
                        "index": 0,
                        "vram_total": 24 * 2**30,
                        "vram_free": 20 * 2**30,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        )

    # ------------------------------------------------------------ running jobs

    async def _work_loop(self) -> None:
        while True:
            await self._work.wait()
            if not self._pending:
                self._work.clear()
                self._idle.set()
                continue
            item = self._pending.pop(0)
            self._running = item
            await self._broadcast_status()  # taken off the queue: the 2nd status after a POST
            self._interrupt.clear()
            try:
                await self._execute(item)
            except Exception:
                log.exception("fake ComfyUI failed running %s", item.prompt_id)
            finally:
                self._running = None
            await self._broadcast_status()
            await self._send(
                item.client_id, "executing", {"node": None, "prompt_id": item.prompt_id}
            )

    def _order(self, prompt: JSON) -> list[str]:
        """Node ids so that every node comes after the nodes it links to."""
        deps = {
            nid: {
                str(v[0])
                for v in (n.get("inputs") or {}).values()
                if isinstance(v, list) and len(v) == 2 and str(v[0]) in prompt
            }
            for nid, n in prompt.items()
        }
        order: list[str] = []
        while deps:
            ready = [nid for nid, d in deps.items() if not d - set(order)]
            if not ready:
                return order + list(deps)
            for nid in ready:
                order.append(nid)
                del deps[nid]
        return order

    async def _execute(self, item: _Item) -> None:
        loop = asyncio.get_running_loop()
        pid, prompt, cid = item.prompt_id, item.prompt, item.client_id
        record = JobRecord(pid, time.perf_counter())
        self.jobs.append(record)
        # the faults meant for "the next job" are this job's from the moment it is listed in
        # `jobs`: a test that waits for a job to start and then arms one means the one after
        stall, self.faults.stall_next = self.faults.stall_next, False
        drop, self.faults.drop_ws_mid_job = self.faults.drop_ws_mid_job, False
        messages: list[list[Any]] = []

        async def send(kind: str, data: JSON, keep: bool = False) -> None:
            if keep:
                messages.append([kind, data])
            await self._send(cid, kind, data)

        def stamp() -> int:
            return int(time.time() * 1000)

        await send("execution_start", {"prompt_id": pid, "timestamp": stamp()}, keep=True)
        signatures = await asyncio.to_thread(node_signatures, prompt, self.folder("input"))
        cached = [n for n in prompt if signatures[n] in self._node_cache]
        await send(
            "execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": stamp()}, True
        )
        outputs: dict[str, JSON] = {}
        for node_id in item.outputs:  # a cached output depends on nothing left to run: first
            if node_id in cached:
                outputs[node_id] = self._node_cache[signatures[node_id]] or {}
                await send(
                    "executed",
                    {"node": node_id, "display_node": node_id, "output": outputs[node_id]}
                    | {"prompt_id": pid},
                )
        needed = needed_nodes(prompt, item.outputs)
        order = [n for n in self._order(prompt) if n in needed and n not in cached]
        fresh = dataclasses.replace(item, outputs=[n for n in item.outputs if n not in cached])
        samplers = [n for n in order if prompt[n]["class_type"] in SAMPLERS]
        total_ticks = max(1, len(samplers) * self.steps)
        duration = self.job_seconds
        start = loop.time()
        tick = 0
        files = self._start_render(fresh)
        executed: list[str] = []
        try:
            for node_id in order:
                class_type = prompt[node_id]["class_type"]
                if self._interrupt.is_set():
                    await self._interrupted(item, record, node_id, executed, messages, send)
                    return
                await send(
                    "progress_state",
                    {
                        "prompt_id": pid,
                        "nodes": {
                            node_id: {
                                "value": 0.0,
                                "max": 1.0,
                                "state": "running",
                                "node_id": node_id,
                                "prompt_id": pid,
                                "display_node_id": node_id,
                                "parent_node_id": None,
                                "real_node_id": node_id,
                            }
                        },
                    },
                )
                await send(
                    "executing", {"node": node_id, "display_node": node_id, "prompt_id": pid}
                )
                if stall:
                    await self._interrupt.wait()
                    await self._interrupted(item, record, node_id, executed, messages, send)
                    return
                if class_type == self.faults.fail_class:
                    await self._failed(item, record, node_id, class_type, executed, messages, send)
                    return
                if class_type in SAMPLERS:
                    for step in range(1, self.steps + 1):
                        tick += 1
                        if await self._sleep_until(start + duration * tick / total_ticks):
                            await self._interrupted(item, record, node_id, executed, messages, send)
                            return
                        if drop and tick * 2 >= total_ticks:
                            drop = False
                            await self.drop_websockets(self.faults.ws_refuse_seconds)
                        await send(
                            "progress",
                            {"value": step, "max": self.steps, "prompt_id": pid, "node": node_id},
                        )
                        if self.faults.preview_bytes:
                            await self._send_preview(cid, self.faults.preview_bytes)
                if node_id in item.outputs:
                    if not samplers and await self._sleep_until(start + duration):
                        await self._interrupted(item, record, node_id, executed, messages, send)
                        return
                    rendered = await files
                    if isinstance(rendered, str):  # the node refused to save
                        await self._failed(
                            item, record, node_id, class_type, executed, messages, send, rendered
                        )
                        return
                    output = rendered.get(node_id, {})
                    outputs[node_id] = output
                    await send(
                        "executed",
                        {
                            "node": node_id,
                            "display_node": node_id,
                            "output": output,
                            "prompt_id": pid,
                        },
                    )
                executed.append(node_id)
        finally:
            if not files.done():
                files.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await files
            self._remember(signatures, cached + executed, outputs)
        if self.faults.send_success:
            await send("execution_success", {"prompt_id": pid, "timestamp": stamp()}, keep=True)
        self._finish(item, record, "success" if order else "cached", outputs, messages, True)

    def _remember(
        self, signatures: dict[str, str], done: list[str], outputs: dict[str, JSON]
    ) -> None:
        """Keep what this prompt's nodes made; forget nodes of earlier prompts (a classic cache)."""
        cache = {signatures[n]: outputs.get(n) for n in done}
        self._node_cache = cache

    async def _sleep_until(self, when: float) -> bool:
        """Sleep until loop time `when`; True if interrupted meanwhile."""
        delay = when - asyncio.get_running_loop().time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._interrupt.wait(), delay)
        return self._interrupt.is_set()

    async def _interrupted(
        self,
        item: _Item,
        record: JobRecord,
        node_id: str,
        executed: list[str],
        messages: list[list[Any]],
        send: Send,
    ) -> None:
        data = {
            "prompt_id": item.prompt_id,
            "node_id": node_id,
            "node_type": item.prompt[node_id]["class_type"],
            "executed": executed,
            "timestamp": int(time.time() * 1000),
        }
        await send("execution_interrupted", data, keep=True)
        self._finish(item, record, "interrupted", {}, messages, False)

    async def _failed(
        self,
        item: _Item,
        record: JobRecord,
        node_id: str,
        class_type: str,
        executed: list[str],
        messages: list[list[Any]],
        send: Send,
        message: str | None = None,
    ) -> None:
        data = {
            "prompt_id": item.prompt_id,
            "node_id": node_id,
            "node_type": class_type,
            "executed": executed,
            "exception_message": message or self.faults.fail_message,
            "exception_type": "Exception",
            "traceback": [
                '  File "/srv/comfyui/execution.py", line 496, in execute\n    output_data = ...\n',
                '  File "/srv/comfyui/folder_paths.py", line 397, in get_save_image_path\n'
                "    raise Exception(err)\n",
            ],
            "current_inputs": {"images": ["tensor(...)"]},
            "current_outputs": {},
        }
        await send("execution_error", data, keep=True)
        self._finish(item, record, "error", {}, messages, False)

    def _finish(
        self,
        item: _Item,
        record: JobRecord,
        outcome: str,
        outputs: dict[str, JSON],
        messages: list[list[Any]],
        ok: bool,
    ) -> None:
        record.ended = time.perf_counter()
        record.outcome = outcome
        self.history[item.prompt_id] = {
            "prompt": [
                item.number,
                item.prompt_id,
                item.prompt,
                {"client_id": item.client_id},
                item.outputs,
            ],
            "outputs": outputs,
            "status": {
                "status_str": "success" if ok else "error",
                "completed": ok,
                "messages": messages,
            },
            "meta": {
                nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                for nid in outputs
            },
        }

    # ------------------------------------------------------------ output files (in a thread)

    def _batch(self, prompt: JSON) -> int:
        sizes = [
            n["inputs"]["batch_size"]
            for n in prompt.values()
            if isinstance(n.get("inputs", {}).get("batch_size"), int)
        ]
        amounts = [
            n["inputs"]["amount"]
            for n in prompt.values()
            if n["class_type"] == "RepeatLatentBatch" and isinstance(n["inputs"].get("amount"), int)
        ]
        return int(max(sizes or [1]) * max(amounts or [1]))

    def _next_name(self, subfolder: str, prefix: str, template: str) -> str:
        key = (subfolder, prefix)
        self._counters[key] = self._counters.get(key, 0) + 1
        return template.format(prefix=prefix, n=self._counters[key])

    def _start_render(self, item: _Item) -> asyncio.Task[dict[str, JSON] | str]:
        """`_render` in a thread, counted from now until its thread ends, or until its task
        ends when the thread never started (the job was cancelled first)."""
        state = {"started": False, "dropped": False}
        with self._renders_done:
            self._renders += 1

        def done() -> None:
            with self._renders_done:
                self._renders -= 1
                self._renders_done.notify_all()

        def run() -> dict[str, JSON] | str:
            with self._renders_done:
                if state["dropped"]:
                    return "dropped"
                state["started"] = True
            try:
                return self._render(item)
            finally:
                done()

        def never_started(_: object) -> None:
            with self._renders_done:
                if state["started"]:
                    return
                state["dropped"] = True
            done()

        task = asyncio.create_task(asyncio.to_thread(run))
        task.add_done_callback(never_started)
        return task

    def _wait_for_renders(self, timeout: float = 30.0) -> None:
        with self._renders_done:
            self._renders_done.wait_for(lambda: self._renders == 0, timeout)

    def _render(self, item: _Item) -> dict[str, JSON] | str:
        """Write every output node's files; their `executed` outputs by node id (or an error)."""
        prompt, pad = item.prompt, self.faults.output_bytes
        out: dict[str, JSON] = {}
        batch = self._batch(prompt)
        for node_id in item.outputs:
            node = prompt[node_id]
            inputs = node.get("inputs", {})
            class_type = node["class_type"]
            if class_type == "PreviewImage":
                files = []
                for index in range(batch):
                    name = self._next_name("", "ComfyUI_temp", "{prefix}_{n:05}_.png")
                    _write_file(
                        self.folder("temp") / name,
                        _png_bytes(prompt, f"{item.prompt_id}/{node_id}/{index}"),
                        None,
                    )
                    files.append({"filename": name, "subfolder": "", "type": "temp"})
                out[node_id] = {"images": files}
                continue
            prefix = str(inputs.get("filename_prefix", "ComfyUI"))
            subfolder, _, base = prefix.replace("\\", "/").rpartition("/")
            target = (self.folder("output") / subfolder).resolve()
            if not target.is_relative_to(self.folder("output").resolve()):
                return (
                    "**** ERROR: Saving image outside the output folder is not allowed.\n"
                    f" full_output_folder: {target}\n output_dir: {self.folder('output')}"
                )
            if class_type == "SaveAudio":
                name = self._next_name(subfolder, base, "{prefix}_{n:05}_.flac")
                _write_file(target / name, _flac_bytes(_spoken_text(prompt)), pad)
                out[node_id] = {
                    "audio": [{"filename": name, "subfolder": subfolder, "type": "output"}]
                }
                continue
            if class_type == "VHS_VideoCombine":
                audio = "audio" in inputs
                name = self._next_name(subfolder, base, "{prefix}_{n:05}.mp4")
                png = name[:-4] + ".png"
                if audio:
                    name = name[:-4] + "-audio.mp4"
                _write_file(target / png, _png_bytes(prompt, item.prompt_id), None)
                _write_file(target / name, _mp4_bytes(audio), pad)
                kind = "output" if inputs.get("save_output", True) else "temp"
                out[node_id] = {
                    "gifs": [
                        {
                            "filename": name,
                            "subfolder": subfolder,
                            "type": kind,
                            "format": str(inputs.get("format", "video/h264-mp4")),
                            "frame_rate": inputs.get("frame_rate", 8.0),
                            "workflow": png,
                            "fullpath": str(target / name),
                        }
                    ]
                }
                continue
            files = []
            for index in range(batch):
                name = self._next_name(subfolder, base, "{prefix}_{n:05}_.png")
                data = _png_bytes(prompt, f"{item.prompt_id}/{node_id}/{index}")
                _write_file(target / name, data, pad)
                for _ in range(self.faults.output_copies):
                    files.append(self._reported(target / name, name, subfolder))
            out[node_id] = {"images": files}
        return out

    def _reported(self, path: Path, name: str, subfolder: str) -> JSON:
        """How an output file is named in `executed`: its own name, or the next `report_as`."""
        if self.faults.report_as:
            subfolder, name = self.faults.report_as.pop(0)
            self._aliases[(subfolder, name)] = path
        return {"filename": name, "subfolder": subfolder, "type": "output"}
