from django import forms

from signin.services.attempt import MAX_PASSWORD_LENGTH


class UsernameForm(forms.Form):
    username = forms.CharField(
        max_length=320, label="Email or username",
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True, "autocapitalize": "none",
                                      "spellcheck": "false", "placeholder": "someone@example.com"}),
    )

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        local, at, domain = username.rpartition("@")
        if not at or not local or not domain or any(ord(c) < 32 or ord(c) == 127 for c in username):
            raise forms.ValidationError("Enter your username as name@organisation, for example alice@contoso.com.")
        return username


class PasswordForm(forms.Form):
    # Not stripped: spaces are part of a password. Over-long input gets a form error, not a bind.
    password = forms.CharField(
        max_length=MAX_PASSWORD_LENGTH, strip=False, label="Password",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )


class OtpForm(forms.Form):
    # Six digits from the authenticator app, or a recovery code.
    otp = forms.CharField(
        max_length=32, label="Code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "numeric",
                                      "autocapitalize": "none", "spellcheck": "false"}),
    )
