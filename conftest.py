"""Test-session environment, shared by the tests and the notebooks that nbval runs (kernels inherit it):
the smoke preset, results in a fresh temporary folder, and a non-interactive matplotlib backend."""
import os
import tempfile

os.environ.setdefault("KPSEMI_PRESET", "smoke")
os.environ.setdefault("KPSEMI_RESULTS", tempfile.mkdtemp(prefix="kpsemi-test-results-"))
os.environ.setdefault("MPLBACKEND", "Agg")
