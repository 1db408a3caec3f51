"""The audio stage: sources (files, playback, sound card input), the ring buffer between the audio
callback and the frame loop, the demo music, the streaming feature extractor and its tempo/beat tracker.

``sounddevice`` (PortAudio) is imported only when a live source or ``list_devices`` needs it.
"""

from engine.audio.beat import BeatTracker
from engine.audio.demo import demo_sections, demo_song, write_demo_wav
from engine.audio.features import FEATURE_NAMES, SCALAR_FEATURES, FeatureExtractor
from engine.audio.ring import HopReader, RingBuffer
from engine.audio.sources import FilePlayer, LiveInput, list_devices, load_audio

__all__ = [
    "BeatTracker", "FEATURE_NAMES", "SCALAR_FEATURES", "FeatureExtractor", "FilePlayer", "HopReader",
    "LiveInput", "RingBuffer", "demo_sections", "demo_song", "list_devices", "load_audio",
    "write_demo_wav",
]
