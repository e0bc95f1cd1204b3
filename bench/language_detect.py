"""Language detection candidates for the customer's locale: accuracy, load time, memory, speed.

Run: `python bench/language_detect.py` (each installed candidate of lingua-language-detector,
py3langid and langdetect; the desk uses py3langid through `maildesk.language`). Every
candidate is restricted to the desk's four languages. Load time and memory are measured in a
fresh child process per candidate (import + first detection; peak RSS growth); accuracy on
the support-mail sentences below, speed as three rounds over all of them (bench/rounds.py).
"""

from __future__ import annotations

import importlib.util
import json
import resource
import subprocess
import sys

SAMPLES: dict[str, list[str]] = {
    "en": [
        "Hello, my printer stopped working this morning and shows an error on the display.",
        "I was charged twice for my last order, could you please refund one of the payments?",
        "Thanks for the quick answer, the problem is solved now.",
        "Can you tell me when my parcel will arrive? It has been a week already.",
        "The invoice address is wrong, please change it to our new office.",
        "I cannot log in to my account since yesterday, the password reset mail never arrives.",
    ],
    "de": [
        "Guten Tag, mein Drucker funktioniert seit heute Morgen nicht mehr und zeigt einen Fehler an.",
        "Mir wurde die letzte Bestellung doppelt abgebucht, können Sie bitte eine Zahlung erstatten?",
        "Vielen Dank für die schnelle Antwort, das Problem ist jetzt gelöst.",
        "Können Sie mir sagen, wann mein Paket ankommt? Es ist schon eine Woche her.",
        "Die Rechnungsadresse ist falsch, bitte ändern Sie sie auf unser neues Büro.",
        "Ich kann mich seit gestern nicht mehr anmelden, die Mail zum Zurücksetzen kommt nie an.",
    ],
    "fr": [
        "Bonjour, mon imprimante ne fonctionne plus depuis ce matin et affiche une erreur.",
        "Ma dernière commande a été débitée deux fois, pourriez-vous rembourser un des paiements ?",
        "Merci pour la réponse rapide, le problème est maintenant résolu.",
        "Pouvez-vous me dire quand mon colis arrivera ? Cela fait déjà une semaine.",
        "L'adresse de facturation est fausse, merci de la remplacer par celle de notre nouveau bureau.",
        "Je n'arrive plus à me connecter depuis hier, le courriel de réinitialisation n'arrive jamais.",
    ],
    "es": [
        "Hola, mi impresora dejó de funcionar esta mañana y muestra un error en la pantalla.",
        "Me cobraron dos veces el último pedido, ¿podrían devolverme uno de los pagos?",
        "Gracias por la respuesta rápida, el problema ya está resuelto.",
        "¿Pueden decirme cuándo llegará mi paquete? Ya pasó una semana.",
        "La dirección de facturación es incorrecta, por favor cámbienla a nuestra nueva oficina.",
        "No puedo iniciar sesión desde ayer, el correo para restablecer la contraseña nunca llega.",
    ],
}
# Short or mixed text: a detector should not be sure (the desk needs the default here).
AMBIGUOUS = ["ok", "Thanks!", "Merci", "Danke", "Hola", "PDF attached", "Order 12345", "+1", "Re: Re: test"]

LANGS = ("en", "de", "fr", "es")

CHILD = r"""
import json, sys, time
name = sys.argv[1]
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = rss()
start = time.perf_counter()
if name == "lingua":
    from lingua import Language, LanguageDetectorBuilder
    four = (Language.ENGLISH, Language.GERMAN, Language.FRENCH, Language.SPANISH)
    det = LanguageDetectorBuilder.from_languages(*four).with_preloaded_language_models().build()
    det.compute_language_confidence_values("Bonjour, mon imprimante ne fonctionne plus.")
elif name == "py3langid":
    from py3langid.langid import LanguageIdentifier, MODEL_FILE
    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ident.set_languages(["en", "de", "fr", "es"])
    ident.classify("Bonjour, mon imprimante ne fonctionne plus.")
else:
    from langdetect import DetectorFactory, detect_langs
    DetectorFactory.seed = 0
    detect_langs("Bonjour, mon imprimante ne fonctionne plus.")
took = time.perf_counter() - start
after = rss()
print(json.dumps({"load_s": took, "rss_mb": (after - before) / 1024}))
"""


def detector(name: str):  # noqa: ANN201 - a callable text -> (lang, confidence)
    if name == "lingua":
        from lingua import Language, LanguageDetectorBuilder

        langs = {Language.ENGLISH: "en", Language.GERMAN: "de", Language.FRENCH: "fr", Language.SPANISH: "es"}
        det = LanguageDetectorBuilder.from_languages(*langs).build()

        def run(text: str) -> tuple[str, float]:
            values = det.compute_language_confidence_values(text)
            return (langs[values[0].language], values[0].value) if values else ("", 0.0)

        return run
    if name == "py3langid":
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        ident.set_languages(list(LANGS))
        return lambda text: tuple(ident.classify(text))
    from langdetect import DetectorFactory, detect_langs

    DetectorFactory.seed = 0

    from langdetect.lang_detect_exception import LangDetectException

    def run_ld(text: str) -> tuple[str, float]:
        try:
            best = [x for x in detect_langs(text) if x.lang in LANGS]
        except LangDetectException:
            return ("", 0.0)
        return (best[0].lang, best[0].prob) if best else ("", 0.0)

    return run_ld


def main() -> None:
    sys.path.insert(0, ".")
    from bench.rounds import measure_rounds, summary

    modules = {"lingua": "lingua", "py3langid": "py3langid", "langdetect": "langdetect"}
    for name, module in modules.items():
        if importlib.util.find_spec(module) is None:
            print(f"{name}: not installed")
            continue
        loads = []
        for _ in range(3):
            out = subprocess.run([sys.executable, "-c", CHILD, name], capture_output=True, text=True, check=True)
            loads.append(json.loads(out.stdout))
        run = detector(name)
        right = total = 0
        wrong = []
        for lang, texts in SAMPLES.items():
            for text in texts:
                got, _conf = run(text)
                total += 1
                right += got == lang
                if got != lang:
                    wrong.append(f"{lang}->{got}: {text[:40]}")
        confident_short = [(t, *run(t)) for t in AMBIGUOUS]
        texts = [t for ts in SAMPLES.values() for t in ts]
        timing = measure_rounds(lambda run=run, texts=texts: [run(t) for t in texts])
        print(f"== {name}")
        print(f"  accuracy {right}/{total}; misses: {wrong or 'none'}")
        print("  load+first call: " + summary([x["load_s"] for x in loads]))
        print("  peak RSS growth: " + summary([x["rss_mb"] for x in loads], unit="MB", digits=1))
        print("  per sentence:    " + summary(timing, scale=1000 / len(texts), unit="ms"))
        print("  short texts: " + ", ".join(f"{t!r}={lang}:{conf:.2f}" for t, lang, conf in confident_short))
    print(f"(maxrss of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
