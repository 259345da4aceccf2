from django import template

from signin.script import script_integrity

register = template.Library()


@register.simple_tag
def signin_script_integrity() -> str:
    return script_integrity()
