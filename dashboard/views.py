from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect


def home(request: HttpRequest) -> HttpResponse:
    """`/`: the workbench for people who are signed in, the login form for everyone else."""
    if request.user.is_authenticated:
        return redirect("/workbench/")
    return redirect("/accounts/login/")
