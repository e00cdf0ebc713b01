"""SynthMIC: render a small, exactly labelled demo set in the OpenMIC-2018 release layout.

One job: write a synthetic but musically real dataset that the OpenMIC reader reads exactly
as it reads the real release (DESIGN §2), so the demo study exercises the same code path.
`synthesize` is the public function (``python -m east_ray.synthmic --out DIR`` runs it), and
`demo.prepare_demo` readies the demo study's data with it.
The underscored modules are internal.

How a clip is made. A *track* is one rendering of a real score from music21's bundled
corpus (Bach chorales, Monteverdi madrigals, Palestrina mass sections, Trecento pieces,
Haydn/Mozart/Beethoven quartet movements; a fixed, seeded draw). Each track keeps 1-4 of the
score's parts, gives every kept part a General-MIDI program drawn from the instrument pool
(octave-shifted into that instrument's range), and may add a bass line that follows the
lowest sounding note of the score on every beat and a generated drum pattern on the GM
percussion kit. Every stem is rendered on its own with tinysoundfont (pretty_midi's
``TimGM6mb.sf2`` by default, any .sf2 by option); the stems are mixed with seeded gains
(-12..0 dB) and the mix is peak-normalised to -3 dBFS (Vorbis overshoots a little). 1-3
clips of exactly 10.0 s are cut from each track at non-overlapping offsets;
``sample_key = f"{track_id:06d}_{start_ms}"``.

Audio is **44.1 kHz stereo** OGG Vorbis, like OpenMIC, so the demo also exercises the
readers' downmix and resampling; parts get a seeded MIDI pan.

Labels are exact by construction. Only the notes that overlap the 10 s window (by at least
0.1 s; drum hits: onsets inside the window) are rendered, so nothing outside the window
leaks in. A class is *present* iff one of its stems has such notes and is audible (its peak
is within 40 dB of the loudest stem; a stem that renders silent is left out of the mix). GM
programs map to the 20 OpenMIC classes; the kit's crash/ride/splash/china notes are
``cymbals``, its other notes ``drums``. Mandolin and ukulele have no GM program and are
never present; a few parts get programs outside the taxonomy (harp, oboe, horn, ...), which
are present in the audio but are no class. Like OpenMIC, not every class is annotated:
present classes are annotated positive (relevance 1.0) except a seeded 10% of them, absent
classes are annotated negative (0.0) with probability 0.5, and the rest stay unobserved
(exactly 0.5, ``Y_mask`` False).

Files (names as in the OpenMIC release): ``class-map.json``, ``openmic-2018.npz``
(``Y_true``, ``Y_mask``, ``sample_key``), ``openmic-2018-aggregated-labels.csv``,
``openmic-2018-metadata.csv``, ``partitions/split01_{train,test}.csv`` (group-disjoint by
source score, about 75/25), ``audio/<key[:3]>/<key>.ogg``. SynthMIC has no VGGish model, so
the npz has **no** ``X`` and there is **no** ``vggish/`` folder. Extra files:
``README.txt``, ``synthmic-stems.csv`` (the full construction truth, one row per stem and clip,
including present-but-unannotated classes) and ``synthmic.json`` (parameters and summary,
written last: its presence marks a complete set).

Determinism: the same ``n_clips``, ``seed``, SoundFont and music21 version give the same keys,
labels, splits and decoded audio whatever ``workers`` is. The OGG *bytes* differ between runs
because libsndfile draws a random Ogg stream serial number; the decoded samples do not.
"""

from east_ray.synthmic._pipeline import synthesize

__all__ = ["synthesize"]
