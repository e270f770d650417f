"""Glance v2 subset under /image: version discovery, images (two-step
create and upload, list with filters and paging, show, JSON-patch update,
delete, tags) and their data. Raw and qcow2 images, ``bare`` containers;
no image members, imports or multiple stores."""
from nova_api.openstack.image import image_data, images, versions

BLUEPRINTS = (versions.bp, images.bp, image_data.bp)
