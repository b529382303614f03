//! Feedback's request readers: a survey definition, a customer's answers
//! checked against it, and free text through language detection, stemming
//! and themes. The first byte picks which; for answers the second byte says
//! where the survey's bytes end and the answers' begin.
#![no_main]

use cairn_contract::feedback::v1 as pb;
use cairn_feedback::domain::text;
use cairn_feedback::grpc::convert;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let now = chrono::Utc::now();
    match selector % 3 {
        0 => {
            if let Ok(request) = pb::CreateSurveyRequest::decode(rest) {
                if let Some(survey) = request.survey {
                    let _ = convert::new_survey(survey, now);
                }
            }
        }
        1 => {
            let Some((&split, rest)) = rest.split_first() else {
                return;
            };
            let (survey, answers) = rest.split_at((split as usize).min(rest.len()));
            let Ok(Some(survey)) = pb::CreateSurveyRequest::decode(survey).map(|r| r.survey) else {
                return;
            };
            let Ok(survey) = convert::new_survey(survey, now) else {
                return;
            };
            if let Ok(Some(response)) =
                pb::SubmitSurveyResponseRequest::decode(answers).map(|r| r.response)
            {
                let _ =
                    survey.check_answers("response.answers", &convert::answers(response.answers));
            }
        }
        _ => {
            let comment = String::from_utf8_lossy(rest);
            let language = text::detect_language(&comment);
            let _ = text::stems(&comment, &language);
            let _ = text::themes(&comment, &language);
        }
    }
});
