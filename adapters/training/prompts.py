"""Prompts for training the demo adapters (train) and checking them (held out)."""

TOPICS = [
    "the moon", "volcanoes", "honey bees", "the ocean", "rainbows", "bread", "trains", "coffee",
    "the internet", "dinosaurs", "chess", "the piano", "deserts", "penguins", "electricity",
    "clouds", "gardening", "the Roman Empire", "photosynthesis", "bicycles", "glaciers",
    "libraries", "football", "mountains", "recycling", "the heart", "airplanes", "tea",
    "batteries", "forests", "whales", "cheese", "maps", "the sun", "snow", "rivers",
    "robots", "music", "books", "cats",
]
TEMPLATES = [
    "Tell me about {t}.",
    "What is interesting about {t}?",
    "Explain {t} to a child.",
]
HELD_OUT = [
    "Describe how a rainbow forms.",
    "What do you know about elephants?",
    "Tell me about the history of paper.",
    "Why do leaves change colour in autumn?",
    "Explain what a computer does.",
    "What is the weather like in a rainforest?",
    "Tell me about owls.",
    "How does a car engine work?",
    "What are stars made of?",
    "Describe a typical breakfast.",
]


def train_prompts():
    out = []
    for i, t in enumerate(TOPICS):
        for j, tpl in enumerate(TEMPLATES):
            if (i + j) % 3 != 2:  # 80 of 120 combinations, spread over templates
                out.append(tpl.format(t=t))
    return out
