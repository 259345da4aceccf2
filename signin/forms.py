from django import forms
from django.views.decorators.debug import sensitive_variables

from signin.services.attempt import MAX_PASSWORD_LENGTH
from signin.services.names import MAX_USERNAME_LENGTH, UsernameRefused, username_canonical
from signin.services.records import CONTROL_CHARACTERS

USERNAME_FORMAT = "Enter your username as name@organisation, for example alice@contoso.com."
# Why a name was refused (signin/services/names.py), in the words the username page shows.
USERNAME_REFUSALS = {
    "format": USERNAME_FORMAT,
    "too_long": USERNAME_FORMAT,
    "spaces": "A username has no spaces. Enter it without them, for example alice@contoso.com.",
    "characters": "Your username contains a character a username can't have (an invisible or control "
                  "character). Type it again, for example alice@contoso.com.",
}


class UsernameForm(forms.Form):
    # signin/username.html writes the input itself (autocomplete, autofocus, …): Django's widget templates cost
    # half of the page's rendering, and the first page of every sign-in is rendered most of all.
    # What it takes is a UPN, name@domain (signin/services/names.py: no DOMAIN\user, no bare name), which is often
    # but not always the person's e-mail address: the label says "Username", the hint under it says the form.
    username = forms.CharField(max_length=MAX_USERNAME_LENGTH, label="Username")

    def clean_username(self) -> str:
        """The name as typed, its ends stripped (shown on the password page, kept in the record), once it is
        known to have a canonical spelling: the sign-in uses that one (signin/services/names.py)."""
        username = self.cleaned_data["username"].strip()
        try:
            username_canonical(typed=username)
        except UsernameRefused as refused:
            raise forms.ValidationError(USERNAME_REFUSALS[refused.reason]) from None
        return username


class PasswordForm(forms.Form):
    # Not stripped: spaces are part of a password. Over-long input gets a form error, not a bind. The input is
    # written by signin/password.html (as the username's), never with the value typed.
    password = forms.CharField(max_length=MAX_PASSWORD_LENGTH, strip=False, label="Password")


class OtpForm(forms.Form):
    # Six digits from the authenticator app (enrolment: no recovery code exists yet, so a phone's digit pad).
    otp = forms.CharField(
        max_length=32, label="Code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "numeric",
                                      "autocapitalize": "none", "spellcheck": "false"}),
    )


class MfaCodeForm(OtpForm):
    # Six digits, or a recovery code (letters and digits, "abcd-efgh-…"): a phone's full keyboard, no pattern.
    otp = forms.CharField(
        max_length=32, label="Code or recovery code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "text",
                                      "autocapitalize": "none", "autocorrect": "off", "spellcheck": "false"}),
    )


class PasswordChangeForm(forms.Form):
    """An expired or must-change password and its replacement. Checked here before any agent is contacted:
    every field present, none over-long, no control characters, and the confirmation the same as the new
    password. Whether the new one is good enough is the directory's call alone (its policy answers)."""

    current_password = forms.CharField(
        max_length=MAX_PASSWORD_LENGTH, strip=False, label="Current password",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )
    new_password = forms.CharField(
        max_length=MAX_PASSWORD_LENGTH, strip=False, label="New password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    confirm_password = forms.CharField(
        max_length=MAX_PASSWORD_LENGTH, strip=False, label="Confirm new password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    @sensitive_variables()
    def clean(self) -> dict:
        super().clean()
        cleaned = self.cleaned_data
        for name in ("current_password", "new_password"):
            if CONTROL_CHARACTERS.search(cleaned.get(name) or ""):
                self.add_error(name, "Passwords can't contain control characters.")
        new, confirm = cleaned.get("new_password"), cleaned.get("confirm_password")
        if new is not None and confirm is not None and new != confirm:
            self.add_error("confirm_password", "The new passwords don't match.")
        return cleaned
