"""Nova's loose parameter forms, as clients send them: booleans and integers
may arrive as strings (tempest sends ``"is_public": "True"``, ``"ram":
"512"``), and booleans in oslo's spellings. Schemas accept these forms
(``BOOLEAN``, ``integer_or_string``); ``boolean``/``integer`` make them
values, naming the field when they are out of range."""
from common import exception

TRUE = ("1", "t", "true", "on", "y", "yes")
FALSE = ("0", "f", "false", "off", "n", "no")
# nova/api/validation/parameter_types.py ``boolean``.
BOOLEAN = {"type": ["boolean", "string"],
           "enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
                    False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No",
                    "no"]}
MAX_INT = 2 ** 31 - 1
# Text with no control characters and no leading or trailing space (Nova's
# ``name`` format).
NAME_PATTERN = r"^(?!\s)[^\x00-\x1f\x7f]*(?<!\s)$"
NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NAME_PATTERN}


def integer_or_string():
    """A JSON integer, or a string of decimal digits (range-checked by
    ``integer``)."""
    return {"type": ["integer", "string"], "pattern": "^[0-9]{1,18}$"}


def boolean(field, value):
    """``value`` (a bool or one of oslo's strings) as a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise exception.ValidationError(field=field, reason="must be a boolean")


def integer(field, value, minimum=0, maximum=MAX_INT):
    """``value`` (an int or a string of digits) as an int in [minimum, maximum]."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise exception.ValidationError(field=field, reason="must be an integer") from None
    if not minimum <= number <= maximum:
        raise exception.ValidationError(
            field=field, reason="must be an integer from %d to %d" % (minimum, maximum))
    return number

