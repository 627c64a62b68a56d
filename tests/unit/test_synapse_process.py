"""The one-line reason `hauspost run` and the harness show when Synapse refuses to start."""

from __future__ import annotations

from provisioner.homeserver.synapse_process import first_error_line

CONFIG_ERROR_OUTPUT = """\
2026-11-28 10:00:00,000 - root - INFO - starting

Error in configuration at 'modules.<item 0>.config.allowed_plaintext_types':
  Failed to parse config for module 'synapse_modules.encryption.EncryptionPolicy':
    allowed_plaintext_types: expected a list of an event types, got 5

"""


def test_config_error_carries_the_module_reason() -> None:
    assert first_error_line(CONFIG_ERROR_OUTPUT) == (
        "Error in configuration at 'modules.<item 0>.config.allowed_plaintext_types': "
        "Failed to parse config for module 'synapse_modules.encryption.EncryptionPolicy': "
        "allowed_plaintext_types: expected a list of an event types, got 5")


def test_other_failures_show_the_exception_line() -> None:
    output = ("Traceback (most recent call last):\n  File x\n"
              "synapse_modules.media_internals.IncompatibleSynapseError: media gate missing\n")
    assert first_error_line(output) == (
        "synapse_modules.media_internals.IncompatibleSynapseError: media gate missing")


def test_empty_output() -> None:
    assert first_error_line("") == "(no output)"
