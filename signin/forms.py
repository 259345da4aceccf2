from django import forms
from django.views.decorators.debug import sensitive_variables

from signin.services.attempt import MAX_PASSWORD_LENGTH
from signin.services.records import CONTROL_CHARACTERS


class UsernameForm(forms.Form):
    # signin/username.html writes the input itself (autocomplete, autofocus, …): Django's widget templates cost
    # half of the page's rendering, and the first page of every sign-in is rendered most of all.
    username = forms.CharField(max_length=320, label="Email or username")

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        local, at, domain = username.rpartition("@")
        if not at or not local or not domain or any(ord(c) < 32 or ord(c) == 127 for c in username):
            raise forms.ValidationError("Enter your username as name@organisation, for example alice@contoso.com.")
        return username


class PasswordForm(forms.Form):
    # Not stripped: spaces are part of a password. Over-long input gets a form error, not a bind. The input is
    # written by signin/password.html (as the username's), never with the value typed.
    password = forms.CharField(max_length=MAX_PASSWORD_LENGTH, strip=False, label="Password")


class OtpForm(forms.Form):
    # Six digits from the authenticator app, or a recovery code.
    otp = forms.CharField(
        max_length=32, label="Code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "numeric",
                                      "autocapitalize": "none", "spellcheck": "false"}),
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
