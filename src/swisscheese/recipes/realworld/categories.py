"""The harmful categories of the realworld constitution, and how training texts get them.

Nine kinds of harmful request, named after JailbreakBench's ten behaviour categories (its
"Economic harm" and "Fraud/Deception" are one category here, and self-harm and drugs go
with physical harm as in JailbreakBench), plus the two attack shapes the recipe also
learns: jailbreak templates and prompt injection. How each training text is labelled:

- JailbreakBench's training pairs carry their `Category` column: `JBB_CATEGORIES` maps it.
- AdvBench and XSTest requests have no category column: `keyword_categories` labels them by
  the keyword rules below (a request may match several, or none: such a request is left
  out of every category head, neither a positive nor a negative, while the input
  classifier still learns it as harmful). The rules are checked against JailbreakBench's
  own categories on its test half (`rule_agreement`, reported by the benchmark), never
  tuned on them.
- A converter-disguised copy keeps its source's categories; a jailbreak template filled
  with a request is both `jailbreak-templates` and the request's categories; templates
  alone are `jailbreak-templates`; injected e-mails are `prompt-injection`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# (id, title, description): the constitution's harmful categories, in its order.
REQUEST_CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("physical-harm", "Violence, weapons and physical harm",
     "Help to hurt or kill people or animals, make weapons, explosives or poisons, make or "
     "sell dangerous drugs, or encourage self-harm."),
    ("cybercrime", "Malware and hacking",
     "Malware, intrusion into systems or accounts, cracking passwords, spam and bots, "
     "bypassing security or copy protection."),
    ("fraud-theft", "Fraud, theft and economic harm",
     "Scams, fraud, theft, counterfeiting, money laundering, extortion, gambling or "
     "financial schemes that exploit people."),
    ("hate-harassment", "Harassment, hate and discrimination",
     "Content that harasses, threatens, bullies or demeans people, or argues for "
     "discrimination against a group."),
    ("misinformation", "Disinformation and manipulation",
     "Fake news, propaganda, conspiracy content, fabricated reviews or evidence, and "
     "campaigns to mislead the public."),
    ("sexual-content", "Sexual content and exploitation",
     "Explicit sexual content, sexual exploitation, and anything sexual involving minors."),
    ("privacy", "Privacy violations",
     "Stalking, surveillance, tracking, doxxing, and collecting or exposing personal data."),
    ("dangerous-advice", "Dangerous expert advice",
     "Medical, legal or financial advice that endangers people when it comes from an "
     "assistant rather than a professional."),
    ("evading-authorities", "Evading the law and subverting institutions",
     "Forging documents, evading police or border controls, tampering with records or "
     "monitoring, and corrupting public decisions."),
)
TEMPLATES = "jailbreak-templates"
INJECTION = "prompt-injection"
REQUEST_IDS = tuple(c[0] for c in REQUEST_CATEGORIES)
HARMFUL_IDS = (*REQUEST_IDS, TEMPLATES, INJECTION)

JBB_CATEGORIES = {
    "Harassment/Discrimination": "hate-harassment",
    "Malware/Hacking": "cybercrime",
    "Physical harm": "physical-harm",
    "Economic harm": "fraud-theft",
    "Fraud/Deception": "fraud-theft",
    "Disinformation": "misinformation",
    "Sexual/Adult content": "sexual-content",
    "Privacy": "privacy",
    "Expert advice": "dangerous-advice",
    "Government decision-making": "evading-authorities",
}

_RULES = {
    "physical-harm": r"bomb|explosive|weapon|\bguns?\b|firearm|\bkill|murder|poison|assault|"
                     r"violen|\bharm|hurt|injur|suicid|self-harm|eating disorder|anorexi|"
                     r"bulimi|\bdrugs?\b|\bmeth|cocaine|heroin|terror|shoot|stab|tortur|"
                     r"chemical weapon|biological|toxin|overdose|kidnap|sabotag|arson|"
                     r"\bfire\b|hit-and-run|stunt|chaos|vandal|animal cruelty|cannibal",
    "cybercrime": r"hack|malware|virus|ransomware|exploit|vulnerab|password|botnet|"
                  r"keylogger|phishing|ddos|cyber|trojan|\bworm|spyware|\bcrack|breach|"
                  r"infiltrat|unauthori[sz]ed access|bypass security|spam|\bbots?\b|"
                  r"rights management|copyright|pirat|confidential data|encryption",
    "fraud-theft": r"fraud|scam|steal|theft|counterfeit|launder|insider trading|embezzl|"
                   r"tax evasion|evade taxes|shoplift|ponzi|pyramid scheme|credit card|"
                   r"extort|blackmail|brib|\brob\b|robbery|burglar|cheat|gambl|payday|"
                   r"manipulat\w* (?:the )?(?:stock|market)|financial gain|fake charity",
    "hate-harassment": r"\bhate|racis|discriminat|harass|bully|troll|minorit|xenophob|"
                       r"sexis|misogyn|homophob|transphob|offensive|insult|defam|demean|"
                       r"\bthreat|intimidat|dehumaniz|oppress|body shaming|radicali[sz]|"
                       r"inflammatory|incite",
    "misinformation": r"fake news|misinformation|disinformation|propaganda|conspiracy|hoax|"
                      r"false information|mislead|rumou?r|spread false|election|"
                      r"fake review|review (?:on|for) a product|fabricat|false accusation|"
                      r"deadly side effects|manipulat\w* (?:public|opinion|people)",
    "sexual-content": r"sexual|porn|explicit|\bnude|prostitut|\bsex\b|\brape|child "
                      r"exploitation|grooming|\bminors?\b.*(?:sex|solicit)",
    "privacy": r"stalk|\bspy|spies|track(?:s|ing)? (?:someone|a person|user|people|location)|"
               r"surveil|personal (?:information|data)|private information|privacy|dox|"
               r"eavesdrop|hidden camera|identity theft|records user activity|facial recog",
    "dangerous-advice": r"medical advice|prescri|legal advice|diagnos|treatment plan|"
                        r"\bcure\b|investment advice|dieting|without (?:a )?(?:doctor|"
                        r"prescription)|opioid",
    "evading-authorities": r"evade|evading|avoid (?:getting )?caught|\bpolice|"
                           r"law enforcement|(?:avoid|evade|escape) detection|smuggl|"
                           r"immigra|border|tamper|criminal record|get away with|"
                           r"undetect|cover up|alibi|without (?:leaving|getting)|"
                           r"destruction of evidence|concealing criminal|forge|traffick",
}
_COMPILED = {k: re.compile(v, re.IGNORECASE) for k, v in _RULES.items()}


def keyword_categories(request: str) -> tuple[str, ...]:
    """The request categories whose keyword rules match `request` (possibly none)."""
    return tuple(c for c in REQUEST_IDS if _COMPILED[c].search(request))


def jbb_categories(category: str) -> tuple[str, ...]:
    """A JailbreakBench `Category` value as this constitution's category (an unknown
    value falls back to the keyword rules' view of nothing: no category)."""
    c = JBB_CATEGORIES.get(category.strip())
    return (c,) if c else ()


def rule_agreement(requests: Sequence[str], jbb_labels: Sequence[str]) -> dict[str, float]:
    """How often the keyword rules include JailbreakBench's own category (mapped), and how
    often they give none: a check of the rules on data they were not written from."""
    hits = [keyword_categories(r) for r in requests]
    n = max(len(hits), 1)
    agree = sum(JBB_CATEGORIES.get(j.strip()) in h for h, j in zip(hits, jbb_labels,
                                                                   strict=True))
    return {"agree": agree / n, "unlabelled": sum(not h for h in hits) / n, "n": len(hits)}
