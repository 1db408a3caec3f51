/*{
    "DESCRIPTION": "Strobe: flashes the picture towards white. trigger (0..1) is the flash level now, so a mapping can route the beat through an envelope to it; rate (flashes per second, 0 = off) adds a free-running strobe on TIME. amount scales both; trigger 0 and rate 0 leave the picture unchanged.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Stylize", "Color"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Amount", "TYPE": "float", "DEFAULT": 0.8, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "trigger", "LABEL": "Trigger (flash level)", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "rate", "LABEL": "Rate (Hz, 0 = off)", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 20.0},
        {"NAME": "invert", "LABEL": "Flash inverts instead of whitening", "TYPE": "bool", "DEFAULT": false}
    ]
}*/

// The free-running strobe is lit for the first quarter of each period.
const float DUTY = 0.25;

void main() {
    vec3 c = IMG_THIS_PIXEL(inputImage).rgb;
    float timed = rate > 0.0 ? step(fract(TIME * rate), DUTY) : 0.0;
    float flash = amount * max(trigger, timed);
    vec3 lit = invert ? 1.0 - c : vec3(1.0);
    gl_FragColor = vec4(mix(c, lit, flash), 1.0);
}
