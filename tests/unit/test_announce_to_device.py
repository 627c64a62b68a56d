"""How room keys for many rooms are packed into `sendToDevice` requests."""

from __future__ import annotations

from provisioner.announcements.bot import DeviceMessage, to_device_batches, to_device_body


def _m(user: str, device: str, room: str) -> DeviceMessage:
    return DeviceMessage(user, device, room, {"ciphertext": f"{room}/{user}/{device}"})


def test_many_rooms_share_a_request_up_to_the_batch_size() -> None:
    messages = [_m(f"@u{i}:x", "D", f"!r{i}") for i in range(450)]
    batches = to_device_batches(messages, size=200)
    assert [len(b) for b in batches] == [200, 200, 50]
    assert [m for b in batches for m in b] == messages  # nothing lost, order kept


def test_a_device_getting_two_keys_gets_them_in_two_requests() -> None:
    a1, b1, a2, c1 = (_m("@a:x", "A", "!one"), _m("@b:x", "B", "!one"),
                      _m("@a:x", "A", "!two"), _m("@c:x", "C", "!two"))
    batches = to_device_batches([a1, b1, a2, c1], size=200)
    assert batches == [[a1, b1], [a2, c1]]
    assert to_device_body(batches[0]) == {"messages": {
        "@a:x": {"A": {"ciphertext": "!one/@a:x/A"}}, "@b:x": {"B": {"ciphertext": "!one/@b:x/B"}}}}


def test_two_devices_of_one_person_go_in_one_request() -> None:
    batch = to_device_batches([_m("@a:x", "PHONE", "!r"), _m("@a:x", "LAPTOP", "!r")])
    assert len(batch) == 1
    assert to_device_body(batch[0])["messages"]["@a:x"].keys() == {"PHONE", "LAPTOP"}


def test_no_messages_no_request() -> None:
    assert to_device_batches([]) == []
