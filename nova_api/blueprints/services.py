import datetime

from flask import Blueprint, current_app, jsonify

from common.db import api as db_api
from common.db.models import utcnow
from nova_api import views

bp = Blueprint("services", __name__, url_prefix="/v1/services")


@bp.get("")
def index():
    conf = current_app.extensions["mininova"]["conf"]
    down_after = datetime.timedelta(seconds=conf.scheduler.service_down_time)
    now = utcnow()
    with current_app.extensions["mininova"]["db"].transaction() as s:
        services = db_api.service_list(s)
    return jsonify({"services": [views.service(svc, now, down_after) for svc in services]})
