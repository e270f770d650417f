"""Hypervisor drivers of mininova compute. Only this package imports libvirt."""

# compute_driver -> (module, class); imported on use, so that importing
# nova_compute.virt (or running the in-memory fake) needs no libvirt-python.
DRIVERS = {
    "libvirt": ("nova_compute.virt.libvirt.driver", "LibvirtDriver"),
    "fake": ("nova_compute.virt.fake", "FakeDriver"),
    "fake-libvirt": ("nova_compute.virt.fake_libvirt", "FakeLibvirtDriver"),
    "fake-failing": ("nova_compute.virt.fake_libvirt", "FailingSpawnDriver"),
}


def get_driver(conf, **kwargs):
    """The ComputeDriver named by ``conf.compute.compute_driver``, not yet
    initialised: the caller runs ``init_host(conf.host)`` on it."""
    import importlib
    name = conf.compute.compute_driver
    if name not in DRIVERS:
        raise ValueError("unknown compute_driver %r" % (name,))
    module, cls = DRIVERS[name]
    return getattr(importlib.import_module(module), cls)(conf, **kwargs)
