"""What the simulated chatbot and its customers say (dashboard/simulator.py plays it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Script:
    """One kind of conversation: the opening lines, then an escalation (or the bot solves it)."""

    topic: str
    lines: tuple[tuple[str, str], ...]  # (sender, text), sender "customer" or "bot"
    reason: str | None  # why the bot asks for a human; None: the bot resolves it alone
    replies: tuple[str, ...]  # the customer's answers to an agent, in order


SCRIPTS: tuple[Script, ...] = (
    Script(
        "late delivery",
        (
            ("bot", "Hi! I'm the virtual assistant. How can I help?"),
            ("customer", "My order still hasn't arrived and it's been ten days."),
            ("bot", "Sorry to hear that. Could you share your order number?"),
            ("customer", "It's 48213. I need it before the weekend."),
            ("bot", "I can't promise a delivery date myself. Let me bring in a colleague."),
        ),
        "late order, customer needs a delivery date",
        (
            "Thanks for picking this up.",
            "Order 48213, ordered on the 3rd.",
            "Friday would work, yes.",
            "Great, thank you so much!",
        ),
    ),
    Script(
        "refund",
        (
            ("bot", "Hello! What can I do for you today?"),
            ("customer", "The kettle I bought stopped working after a week. I want a refund."),
            ("bot", "I'm sorry. Refunds over 100 EUR need one of my human colleagues."),
        ),
        "refund above the bot's limit",
        (
            "Hi. It's the steel kettle, 129 EUR.",
            "I still have the box, yes.",
            "A refund to my card, please.",
            "Perfect, thanks for your help.",
        ),
    ),
    Script(
        "double charge",
        (
            ("bot", "Hi there! How can I help?"),
            ("customer", "I was charged twice for the same order."),
            ("bot", "Billing disputes are handled by our team. Connecting you to an agent."),
        ),
        "billing dispute: charged twice",
        (
            "Hello. Two charges of 54.90 on the 12th.",
            "The card ends in 4417.",
            "OK, I'll keep an eye on my statement.",
            "Thanks, bye!",
        ),
    ),
    Script(
        "wants a human",
        (
            ("bot", "Hi! I'm the virtual assistant. Ask me anything."),
            ("customer", "Can I talk to a real person please?"),
            ("bot", "Of course. I'm putting you through to the next free agent."),
        ),
        "customer asked for a human",
        (
            "Hi! I'd like to change the address on my account.",
            "New address is 12 Harbour Street.",
            "Yes, that's right.",
            "That's all, thanks!",
        ),
    ),
    Script(
        "password reset",
        (
            ("bot", "Hello! How can I help?"),
            ("customer", "I forgot my password."),
            ("bot", "No problem: I've sent a reset link to the e-mail address on your account."),
            ("customer", "Got it, that worked. Thanks!"),
            ("bot", "Glad I could help. Have a nice day!"),
        ),
        None,
        ("Thanks!",),
    ),
    Script(
        "opening hours",
        (
            ("bot", "Hi! What would you like to know?"),
            ("customer", "When are you open on Sundays?"),
            ("bot", "Our stores open 10:00 to 16:00 on Sundays."),
            ("customer", "Thanks!"),
        ),
        None,
        ("Thanks!",),
    ),
)

ESCALATING = tuple(s for s in SCRIPTS if s.reason is not None)
RESOLVING = tuple(s for s in SCRIPTS if s.reason is None)
# For a session the simulator did not open (escalated by someone else, or before a restart).
ADOPTED = Script("adopted", (), "customer asked for a human", ("Hello?", "I see.", "OK, thanks.", "Thank you!"))

# The shop's customers: a small crowd, so the same people come back and agents see their
# earlier sessions in the customer panel. Sent as the escalation's `data.customer`.
CUSTOMERS: tuple[dict[str, str], ...] = tuple(
    {
        "id": f"c{100 + i}",
        "name": name,
        "email": f"{name.split()[0].lower()}@example.com",
        "plan": plan,
        "language": lang,
    }
    for i, (name, plan, lang) in enumerate(
        (
            ("Ana Costa", "Plus", "Portuguese"),
            ("Ben Walker", "Basic", "English"),
            ("Chloe Martin", "Plus", "French"),
            ("David Levi", "Business", "English"),
            ("Emma Schmidt", "Basic", "German"),
            ("Farid Haddad", "Plus", "Arabic"),
            ("Grace Okafor", "Business", "English"),
            ("Hugo Moreau", "Basic", "French"),
            ("Ines Duarte", "Plus", "Spanish"),
            ("Jonas Berg", "Basic", "Swedish"),
            ("Kim Tran", "Business", "Vietnamese"),
            ("Lea Novak", "Plus", "Slovenian"),
        )
    )
)
AGENT_LEFT_LINE = "Your agent had to step away. You're back in the queue; the next free colleague will pick you up."
NUDGE_LINE = "Hello? Is anyone there?"
