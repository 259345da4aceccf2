from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models

from branding.colours import ACCENT_PATTERN, MIN_CONTRAST, contrast_with_white

SIGNIN_TEXT_MAX = 500


def accent_colour_validate(value: str) -> None:
    if not value:
        return
    if not ACCENT_PATTERN.fullmatch(value):
        raise ValidationError("Enter the colour as # and six hexadecimal digits, for example #0b5cad.",
                              code="format")
    ratio = contrast_with_white(value)
    if ratio < MIN_CONTRAST:
        raise ValidationError(
            f"{value} is too light: white text on it (the buttons), and it as text on white (the links), would "
            f"have a contrast of {ratio:.1f}:1, and at least {MIN_CONTRAST}:1 is needed to read. Choose a darker "
            "colour.", code="contrast")


class Branding(models.Model):
    """A tenant's company branding on the sign-in pages, once the username says which tenant it is: a logo, an
    accent colour and a text. Nothing set, or no row: the portal's own look.

    The logo is kept in the database, not in media files: a production portal has several nodes and no shared
    file storage, and the logo is small (branding/images.py re-encodes it)."""

    tenant = models.OneToOneField("tenant.Tenant", on_delete=models.CASCADE, related_name="branding")
    accent_colour = models.CharField(
        "accent colour", max_length=7, blank=True, default="", validators=[accent_colour_validate],
        help_text="The buttons' and links' colour, as #rrggbb (for example #0b5cad). It must be dark enough for "
                  "white text on it. Empty: the portal's blue.")
    signin_text = models.TextField(
        "sign-in page text", max_length=SIGNIN_TEXT_MAX, blank=True, default="",
        validators=[MaxLengthValidator(SIGNIN_TEXT_MAX)],
        help_text=f"Plain text shown under the logo on the sign-in pages, at most {SIGNIN_TEXT_MAX} characters "
                  "(line breaks are kept; HTML is shown as typed, not interpreted).")
    # A PNG re-encoded by branding/images.py; empty: no logo.
    logo = models.BinaryField(blank=True, default=b"", editable=False)
    # Names the logo in its URL, so that a browser may keep it for ever: a new logo is a new URL.
    logo_sha256 = models.CharField(max_length=64, blank=True, default="", editable=False, db_index=True)
    logo_width = models.PositiveSmallIntegerField(default=0, editable=False)
    logo_height = models.PositiveSmallIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "company branding"

    def __str__(self) -> str:
        return f"Company branding of {self.tenant}"

    def clean(self) -> None:
        self.accent_colour = (self.accent_colour or "").strip().lower()
        # Plain text: line breaks kept, other control characters (which no one types) dropped.
        self.signin_text = "".join(c for c in (self.signin_text or "").replace("\r\n", "\n")
                                   if c == "\n" or c.isprintable()).strip()
        # A tenant administrator's form leaves the tenant out, so the unique check of the one-to-one is not run
        # for it: here instead, as a form error rather than the database's IntegrityError.
        if self.tenant_id and Branding.objects.filter(tenant_id=self.tenant_id).exclude(pk=self.pk).exists():
            raise ValidationError({NON_FIELD_ERRORS: "This tenant already has its company branding: edit that."})
