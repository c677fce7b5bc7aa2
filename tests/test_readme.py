"""The README stays a ten-minute read: its first screen gives the two commands, and it stays within
12 KB (long material goes to docs/ beside its code)."""

from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    assert len(text.encode()) <= 12 * 1024, f"README.md is {len(text.encode())} bytes; move long material to docs/"
    first = "\n".join(text.splitlines()[:8])
    assert "make replicate" in first and "make test" in first
