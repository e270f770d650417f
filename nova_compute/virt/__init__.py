"""Hypervisor drivers of mininova compute. Only this package imports libvirt."""


def get_driver(conf, **kwargs):
    """The ComputeDriver named by ``conf.compute.compute_driver``, not yet
    initialised: the caller runs ``init_host(conf.host)`` on it."""
    name = conf.compute.compute_driver
    # Imported here so that importing nova_compute.virt needs no libvirt-python.
    if name == "libvirt":
        from nova_compute.virt.libvirt.driver import LibvirtDriver
        return LibvirtDriver(conf, **kwargs)
    if name == "fake":
        from nova_compute.virt.fake import FakeDriver
        return FakeDriver(conf, **kwargs)
    if name == "fake-failing":
        from nova_compute.virt.fake import FailingSpawnDriver
        return FailingSpawnDriver(conf, **kwargs)
    raise ValueError("unknown compute_driver %r" % (name,))
