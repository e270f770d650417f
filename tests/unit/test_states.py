from common import states


def test_status_mapping():
    assert states.status(states.BUILDING, states.SCHEDULING) == "BUILD"
    assert states.status(states.ACTIVE, None) == "ACTIVE"
    assert states.status(states.STOPPED, None) == "SHUTOFF"
    assert states.status(states.ACTIVE, states.DELETING) == "DELETING"
    assert states.status(states.ACTIVE, states.REBOOTING) == "REBOOT"
    assert states.status(states.ACTIVE, states.REBOOTING_HARD) == "HARD_REBOOT"
    assert states.status(states.ERROR, None) == "ERROR"
    assert states.status(states.DELETED, None) == "DELETED"
